"""Session 13 probe (a device-call record): FlashAttention-4's Hopper forward (flash-attn-4, CuTe DSL)
against our Triton vision kernel on layout pages (5,476 patches, 16 heads, D 80, bf16), through the
product's wrapper (inference/ops/cuda/fa4.py): first-call (compile) time, TFLOP/s at 1 / 4 / 16 pages,
error against the fp32 reference, a mixed-length batch, a CUDA-graph capture replayed on new inputs.

    python3 inference/bench/calls/s13_fa4_probe.py --out FILE.json
"""
from __future__ import annotations

import argparse
import json
import time

import torch

from inference.bench.attn_vision import N, H, D, packed, poison, reference, rel_err, time_ms
from inference.ops.cuda import fa4
from inference.ops.cuda.flash_config import FlashConfig
from inference.ops.cuda.vision_flash import vision_flash_attention


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    rows = []
    q, k, v, cu = packed([N], H, D)
    scale = D ** -0.5
    print("fa4 available:", fa4.available(q), flush=True)
    started = time.perf_counter()
    fa4.attention(q, k, v, cu, N, scale)
    torch.cuda.synchronize()
    compile_s = time.perf_counter() - started
    print(f"first call (compile) {compile_s:.1f} s", flush=True)
    ours = FlashConfig.parse("m128n64w4s3tma")
    for batch in (1, 4, 16):
        q, k, v, cu = packed([N] * batch, H, D)
        ref = reference(q, k, v, cu, scale)
        flops = 4 * N * N * D * H * batch
        for name, fn in (("triton", lambda: vision_flash_attention(q, k, v, cu, N, scale, ours)),
                         ("fa4", lambda: fa4.attention(q, k, v, cu, N, scale)),
                         ("fa4_contig_qk", lambda qc=q.contiguous(), kc=k.contiguous():
                          fa4.attention(qc, kc, v, cu, N, scale))):
            row = dict(batch=batch, impl=name)
            try:
                poison()
                row["rel_err"] = rel_err(fn(), ref)
                row["ms"], row["rep_ms"] = time_ms(fn, 7, 5)
                row["tflops"] = flops / row["ms"] / 1e9
                print(f"B{batch:<3}{name:<16}{row['ms']:>8.3f} ms {row['tflops']:>7.1f} TFLOP/s err {row['rel_err']:.2e}",
                      flush=True)
            except Exception as exc:
                row["error"] = f"{type(exc).__name__}: {exc}"[:400]
                print(f"B{batch:<3}{name:<16} ERROR {row['error']}", flush=True)
            rows.append(row)
        del q, k, v, cu, ref
        torch.cuda.empty_cache()
    lengths = [5476, 1200, 300, 77]
    q, k, v, cu = packed(lengths, H, D)
    try:
        err = rel_err(fa4.attention(q, k, v, cu, max(lengths), scale), reference(q, k, v, cu, scale))
        rows.append(dict(case="mixed", impl="fa4", rel_err=err))
        print(f"mixed {lengths}: err {err:.2e}", flush=True)
    except Exception as exc:
        rows.append(dict(case="mixed", impl="fa4", error=str(exc)[:400]))
        print("mixed ERROR", exc)
    try:  # capture, then replay on new inputs written into the captured tensors
        q, k, v, cu = packed([N] * 2, H, D)
        fa4.attention(q, k, v, cu, N, scale)
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            out = fa4.attention(q, k, v, cu, N, scale)
        q2, k2, v2, _ = packed([N] * 2, H, D)
        q.copy_(q2), k.copy_(k2), v.copy_(v2)
        graph.replay()
        torch.cuda.synchronize()
        err = rel_err(out, reference(q, k, v, cu, scale))
        rows.append(dict(case="graph_replay", impl="fa4", rel_err=err))
        print(f"graph replay on new inputs: err {err:.2e}", flush=True)
    except Exception as exc:
        rows.append(dict(case="graph_replay", impl="fa4", error=str(exc)[:400]))
        print("graph ERROR", exc)
    json.dump(dict(device=torch.cuda.get_device_name(), torch=torch.__version__, compile_s=compile_s, rows=rows),
              open(args.out, "w"), indent=1)


if __name__ == "__main__":
    main()
