"""Host vs device time of the vision encoder's forward for batches of block
crops whose sizes are new every call (as in the document pipeline, where
each prefill step packs a different set of crops) vs the same batch again.
If the host time per forward is much higher for new sizes, per-shape work on
the host (library heuristics, kernel specialisation, plan building) is what
the prefill steps pay, and padding the token count to buckets would cut it.

    python -m inference.bench.prefill_host --out prefill_host.json
"""
from __future__ import annotations

import argparse
import random
import statistics
import time

import torch

from inference.bench.machine import finish


def _batch(rng: random.Random, crops: int) -> list[tuple[int, int, int]]:
    """Grids (t, h, w) in patches of `crops` block crops (even sides: the 2x2 merge)."""
    return [(1, 2 * rng.randint(2, 30), 2 * rng.randint(5, 37)) for _ in range(crops)]


def _forward_times(model, batches, device) -> tuple[list[float], list[float]]:
    host, dev = [], []
    for grids in batches:
        n = sum(t * h * w for t, h, w in grids)
        pixels = torch.randn(n, 1176, device=device)
        torch.cuda.synchronize()
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        t0 = time.perf_counter()
        start.record()
        model.encode_images(pixels, grids)
        end.record()
        host.append(time.perf_counter() - t0)
        torch.cuda.synchronize()
        dev.append(start.elapsed_time(end) / 1000)
    return host, dev


def run(crops: int = 12, calls: int = 30, seed: int = 0) -> dict:
    from inference.models.loader import load_model
    from inference.ops import get_ops

    device = torch.device("cuda")
    model = load_model("dummy:mineru2.5", torch.bfloat16, device, get_ops(device))
    rng = random.Random(seed)
    with torch.inference_mode():
        _forward_times(model, [_batch(rng, crops) for _ in range(5)], device)  # compile, plans, allocator
        one = _batch(rng, crops)
        out = {}
        for name, batches in (("new_sizes", [_batch(rng, crops) for _ in range(calls)]),
                              ("same_batch", [one] * calls),
                              ("new_sizes_again", [_batch(rng, crops) for _ in range(calls)])):
            host, dev = _forward_times(model, batches, device)
            out[name] = {"host_ms_median": 1e3 * statistics.median(host), "device_ms_median": 1e3 * statistics.median(dev),
                         "patches_median": statistics.median(sum(h * w for _, h, w in g) for g in batches)}
    return {"crops_per_forward": crops, "calls": calls, "device": torch.cuda.get_device_name(),
            "torch": torch.__version__, "runs": out}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--crops", type=int, default=12)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    result = run(args.crops, args.calls)
    finish(result, "inference.bench.prefill_host", args)
    for name, r in result["runs"].items():
        print(f"vision forward, {name:16s} host {r['host_ms_median']:7.2f} ms  device {r['device_ms_median']:7.2f} ms"
              f"  ({r['patches_median']:.0f} patches)")


if __name__ == "__main__":
    main()
