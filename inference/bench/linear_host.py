"""Host time of one F.linear call on the GPU when the row count M repeats vs
changes every call (each prefill step has a new token count), with and
without bias (bias -> cuBLASLt with a bias epilogue), and with M rounded up
to a few buckets. The device work is kept small and the queue far from full,
so the figure is the host's own cost per call (launch + library heuristics).

    python -m inference.bench.linear_host --out linear_host.json
"""
from __future__ import annotations

import argparse
import time

import torch
import torch.nn.functional as F

from inference.bench.machine import finish


def _host_us(calls, x_of, weight, bias) -> float:
    torch.cuda.synchronize()
    t0 = time.perf_counter()
    for i in range(calls):
        F.linear(x_of(i), weight, bias)
    host = time.perf_counter() - t0
    torch.cuda.synchronize()
    return host / calls * 1e6


def run(calls: int = 200, k: int = 1280, n: int = 3840) -> dict:
    dev = torch.device("cuda")
    weight = torch.randn(n, k, device=dev, dtype=torch.bfloat16)
    bias = torch.randn(n, device=dev, dtype=torch.bfloat16)
    base = torch.randn(4096 + 8 * calls, k, device=dev, dtype=torch.bfloat16)
    same = lambda i: base[:2048]  # noqa: E731
    fresh = lambda i: base[:1024 + 7 * i + 3 * (i % 5)]  # noqa: E731  (a new M every call, never seen before)
    bucketed = lambda i: base[:((1024 + 7 * i) + 255) // 256 * 256]  # noqa: E731
    rows = {}
    for b_name, b in (("bias", bias), ("no_bias", None)):
        _host_us(20, same, weight, b)  # warm
        rows[f"{b_name}_same_m"] = _host_us(calls, same, weight, b)
        rows[f"{b_name}_new_m_each_call"] = _host_us(calls, fresh, weight, b)
        rows[f"{b_name}_m_in_256_buckets"] = _host_us(calls, bucketed, weight, b)
        rows[f"{b_name}_same_m_again"] = _host_us(calls, same, weight, b)
    return {"calls": calls, "k": k, "n": n, "host_us_per_call": rows, "device": torch.cuda.get_device_name(),
            "torch": torch.__version__}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--calls", type=int, default=200)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = run(args.calls)
    finish(result, "inference.bench.linear_host", args)
    for name, us in result["host_us_per_call"].items():
        print(f"{name:28s} {us:8.1f} us host per F.linear")


if __name__ == "__main__":
    main()
