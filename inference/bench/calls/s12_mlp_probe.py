"""Session 12 probe: what an fc1 GEMM with quick_gelu fused in its epilogue could save.

For the vision MLP's shapes at 5 and 11 layout pages (5,476 patches a page): cuBLAS fc1 (F.linear),
our quick_gelu pass, their sum, and torch.compile(max-autotune-no-cudagraphs) of the pair (inductor's
Triton GEMM templates with the activation in the epilogue, benchmarked against cuBLAS); also the other
three GEMMs of a vision block, for their TFLOP/s. Prints a table, writes JSON to argv[1].
"""
import json
import sys

import torch
import torch.nn.functional as F
from triton.testing import do_bench

from inference.ops.cuda.activation import quick_gelu

torch.manual_seed(0)
dev, dt = "cuda", torch.bfloat16
rows = []


def bench(name, fn, flop):
    ms = do_bench(fn, warmup=50, rep=300)
    rows.append({"name": name, "ms": ms, "tflops": flop / ms / 1e9 if flop else None})
    print(f"{name:48s} {ms:8.3f} ms  {flop / ms / 1e9 if flop else 0:7.1f} TFLOP/s", flush=True)


for pages in (5, 11):
    m = 5476 * pages
    x = torch.randn(m, 1280, device=dev, dtype=dt)
    w1, b1 = torch.randn(5120, 1280, device=dev, dtype=dt) / 36, torch.randn(5120, device=dev, dtype=dt)
    w2, b2 = torch.randn(1280, 5120, device=dev, dtype=dt) / 72, torch.randn(1280, device=dev, dtype=dt)
    wq, bq = torch.randn(3840, 1280, device=dev, dtype=dt) / 36, torch.randn(3840, device=dev, dtype=dt)
    wp, bp = torch.randn(1280, 1280, device=dev, dtype=dt) / 36, torch.randn(1280, device=dev, dtype=dt)
    h = torch.randn(m, 5120, device=dev, dtype=dt)
    f1 = 2 * m * 1280 * 5120
    bench(f"p{pages} fc1 cuBLAS", lambda: F.linear(x, w1, b1), f1)
    y = F.linear(x, w1, b1)
    bench(f"p{pages} quick_gelu", lambda: quick_gelu(y), 0)
    bench(f"p{pages} fc1 + quick_gelu", lambda: quick_gelu(F.linear(x, w1, b1)), f1)
    bench(f"p{pages} fc2 cuBLAS", lambda: F.linear(h, w2, b2), f1)
    bench(f"p{pages} qkv cuBLAS", lambda: F.linear(x, wq, bq), 2 * m * 1280 * 3840)
    bench(f"p{pages} proj cuBLAS", lambda: F.linear(x, wp, bp), 2 * m * 1280 * 1280)
    fused = torch.compile(lambda a: (lambda z: z * torch.sigmoid(1.702 * z))(F.linear(a, w1, b1)),
                          mode="max-autotune-no-cudagraphs", dynamic=False)
    try:
        ref = quick_gelu(F.linear(x, w1, b1)).float()
        got = fused(x).float()
        err = ((got - ref).norm() / ref.norm()).item()
        bench(f"p{pages} fc1+gelu inductor max-autotune", lambda: fused(x), f1)
        rows[-1]["rel_err"] = err
        print(f"   rel err vs ours {err:.2e}")
    except Exception as exc:  # a probe: report and go on
        print(f"inductor failed: {type(exc).__name__}: {exc}"[:400])
json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows},
          open(sys.argv[1], "w"), indent=1)
