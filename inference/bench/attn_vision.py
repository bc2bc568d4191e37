"""Vision-encoder attention microbenchmark (run on a GPU, from the repo root).

    python3 -m inference.bench.attn_vision --out FILE.json [--configs m128n64w4s3tma,...] [--reps 7]

Layout pages of 74x74 = 5,476 patches, 16 heads of 80 dims (MinerU2.5's
vision tower), bf16, B in {1, 4, 16} pages packed as views of one qkv
[T, 3, H, D] tensor. Times (CUDA events, after warm-up; median of --reps
repetitions of --inner back-to-back calls, so the Python launch path hides
behind the queue) our Triton kernel (inference/ops/cuda/vision_flash.py) for
each config in CONFIGS, the configs of TILED (those of them in --configs) launched from a tile list as a
replayed encoder graph launches them (rows `tiled_*`), cuDNN and flash SDPA on the [B, H, N, D] view, and
torch's varlen_attn when present. FLOPs = 4 * N^2 * D * H * B. Each output is
checked against an fp32 math-SDPA reference (||out - ref|| / ||ref||, after
the allocator's free memory is filled with NaN so an unwritten element shows).
A mixed-length packed case (5476, 1200, 300) and head dims 64 / 96 / 128
check correctness only. Prints a table; writes every figure to --out.
"""
from __future__ import annotations

import argparse
import json
import statistics
import sys
import time

import torch
import torch.nn.functional as F
import triton
from torch.nn.attention import SDPBackend, sdpa_kernel

from inference.ops.cuda.vision_flash import DEFAULT_CONFIG, FlashConfig, vision_flash_attention
from inference.ops.tiles import flash_tiles, tile_slots
from inference.ops.timing import event_ms

DEV = "cuda"
N, H, D = 5476, 16, 80  # one 1036x1036 layout page: 74x74 patches
BATCHES = (1, 4, 16)
MIXED = (5476, 1200, 300)
CONFIGS = [  # (block_m, block_n, num_warps, num_stages); kept short so the run stays well under 90 s
    FlashConfig(128, 64, 4, 3), FlashConfig(128, 64, 8, 2), FlashConfig(128, 64, 8, 3), FlashConfig(64, 64, 4, 3),
    FlashConfig(128, 64, 4, 3, True), FlashConfig(128, 64, 8, 3, True), FlashConfig(128, 64, 8, 4, True),
    # 8 warps with TMA: the partial-tile masking took them from 116 to 142 registers a thread, one CTA
    # an SM instead of two (400 -> 302 TFLOP/s at B=16 in session 8); capped at 128: two again
    FlashConfig(128, 64, 8, 3, True, maxnreg=128), FlashConfig(128, 64, 8, 4, True, maxnreg=128),
    # 144 registers a thread: 3 CTAs an SM, whose softmax and matrix phases may interleave (the loop of
    # one CTA waits for its Q K^T before its exponentials); the 128-row tiles fit 2 an SM at 255
    FlashConfig(64, 64, 4, 3, True),
    # capped at 128 with 2 stages (41 KiB of shared memory): 4 CTAs an SM
    FlashConfig(64, 64, 4, 2, True, maxnreg=128),
    # accumulators rescaled only when a row's max rises by > 2^8 (unmeasured as of session 8)
    FlashConfig(128, 64, 4, 3, True, lazy_rescale=True), FlashConfig(128, 64, 8, 3, True, maxnreg=128, lazy_rescale=True),
    # P = exp2 in packed bf16 pairs: half the special-function ops (unmeasured as of session 9)
    FlashConfig(128, 64, 4, 3, True, exp_bf16=True), FlashConfig(128, 64, 8, 3, True, maxnreg=128, exp_bf16=True),
    FlashConfig(64, 64, 4, 3, True, exp_bf16=True),
]  # all compile for sm_90 without spills (inference.bench.attn_vision_compile); tiled (TILED below),
#    m128n64w4s3tmaxb spills 8 bytes, the other xb builds none. Dropped after their
#    H200 runs: 128x128 tiles (286-355 TFLOP/s, sessions 3 and 8), 256x64 (346-373), the polynomial
#    exp2 variant (278 vs 418 for its plain config, session 8)
# the graph-captured encoder's launch (a tile list for its grid): candidates for graph_config
TILED = [FlashConfig(128, 64, 4, 3, True), FlashConfig(128, 64, 8, 3, True),
         FlashConfig(128, 64, 8, 3, True, maxnreg=128), FlashConfig(64, 64, 4, 3, True),
         FlashConfig(64, 64, 4, 2, True, maxnreg=128), FlashConfig(128, 64, 4, 3, True, lazy_rescale=True),
         FlashConfig(128, 64, 4, 3, True, exp_bf16=True), FlashConfig(128, 64, 8, 3, True, maxnreg=128, exp_bf16=True),
         FlashConfig(64, 64, 4, 3, True, exp_bf16=True)]
assert DEFAULT_CONFIG in CONFIGS

try:
    from torch.nn.attention.varlen import varlen_attn
except ImportError:
    varlen_attn = None


def packed(lengths: list[int], heads: int, dim: int, dtype=torch.bfloat16):
    """q, k, v as views of one packed qkv [T, 3, H, D] (what the encoder's projection
    yields), and int32 cu_seqlens."""
    qkv = torch.randn(sum(lengths), 3, heads, dim, device=DEV, dtype=dtype)
    cu = torch.tensor([0] + lengths, device=DEV, dtype=torch.int32).cumsum(0, dtype=torch.int32)
    q, k, v = qkv.unbind(1)
    return q, k, v, cu


def reference(q, k, v, cu, scale: float) -> torch.Tensor:
    """fp32 math SDPA per image (exact fp32 products: TF32 off)."""
    out = torch.empty(q.shape, device=DEV, dtype=torch.float32)
    bounds = cu.tolist()
    prev = torch.backends.cuda.matmul.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = False
    try:
        with sdpa_kernel([SDPBackend.MATH]):
            for s, e in zip(bounds[:-1], bounds[1:]):
                qi, ki, vi = (t[s:e].float().transpose(0, 1)[None] for t in (q, k, v))
                out[s:e] = F.scaled_dot_product_attention(qi, ki, vi, scale=scale)[0].transpose(0, 1)
    finally:
        torch.backends.cuda.matmul.allow_tf32 = prev
    return out


def poison() -> None:
    torch.empty(1 << 28, device=DEV).fill_(float("nan"))
    torch.cuda.synchronize()


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    return ((out.float() - ref).norm() / ref.norm()).item()


def time_ms(fn, reps: int, inner: int) -> tuple[float, list[float]]:
    for _ in range(3):
        fn()
    times = []
    for _ in range(reps):
        times.append(event_ms(fn, inner))
    return statistics.median(times), times


def baselines(q, k, v, cu, batch: int, length: int, scale: float) -> dict:
    """name -> callable producing [T, H, D] for the uniform batch."""
    as4d = [t.view(batch, length, H, D).transpose(1, 2) for t in (q, k, v)]

    def sdpa(backend):
        def run():
            with sdpa_kernel([backend]):
                o = F.scaled_dot_product_attention(*as4d, scale=scale)
            return o.transpose(1, 2).reshape(batch * length, H, D)
        return run
    fns = {"cudnn_sdpa": sdpa(SDPBackend.CUDNN_ATTENTION), "flash_sdpa": sdpa(SDPBackend.FLASH_ATTENTION)}
    if varlen_attn is not None:
        fns["varlen_attn"] = lambda: varlen_attn(q, k, v, cu, cu, length, length, scale=scale)
    return fns


def run_case(batch: int, configs: list[FlashConfig], args, rows: list[dict]) -> None:
    q, k, v, cu = packed([N] * batch, H, D)
    scale = D ** -0.5
    ref = reference(q, k, v, cu, scale)
    flops = 4 * N * N * D * H * batch
    fns = {f"triton_{c.name}": (lambda c=c: vision_flash_attention(q, k, v, cu, N, scale, c)) for c in configs}
    for c in (c for c in TILED if c in configs):  # the same kernel launched from a tile list, as graph replays do
        tiles = torch.tensor(flash_tiles([N] * batch, c.block_m, tile_slots(N * batch, c.block_m, batch)),
                             dtype=torch.int32, device=DEV)
        fns[f"tiled_{c.name}"] = lambda c=c, tiles=tiles: vision_flash_attention(q, k, v, cu, N, scale, c, tiles)
    fns.update(baselines(q, k, v, cu, batch, N, scale))
    for name, fn in fns.items():
        row = dict(case=f"B{batch}xN{N}", batch=batch, length=N, heads=H, head_dim=D, impl=name)
        try:
            poison()
            row["rel_err"] = rel_err(fn(), ref)
            row["ms"], row["rep_ms"] = time_ms(fn, args.reps, args.inner)
            row["tflops"] = flops / row["ms"] / 1e9
        except Exception as exc:  # an unsupported backend/config is a result, not a crash
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        rows.append(row)
        show(row)
    del q, k, v, cu, ref
    torch.cuda.empty_cache()


def run_checks(configs: list[FlashConfig], rows: list[dict]) -> None:
    """Correctness only: mixed lengths for every config; other head dims for the default."""
    cases = [(list(MIXED), D, c) for c in configs]
    cases += [([1000, 77, 1], d, DEFAULT_CONFIG) for d in (64, 96, 128)]
    for lengths, dim, config in cases:
        q, k, v, cu = packed(lengths, H, dim)
        row = dict(case="mixed " + "+".join(map(str, lengths)), head_dim=dim, impl=f"triton_{config.name}")
        try:
            poison()
            out = vision_flash_attention(q, k, v, cu, max(lengths), dim ** -0.5, config)
            row["rel_err"] = rel_err(out, reference(q, k, v, cu, dim ** -0.5))
        except Exception as exc:
            row["error"] = f"{type(exc).__name__}: {exc}"[:300]
        rows.append(row)
        show(row)


def show(row: dict) -> None:
    if "error" in row:
        print(f"{row['case']:<22}{row['impl']:<26} ERROR {row['error'][:90]}", flush=True)
        return
    timing = f"{row['ms']:>9.3f} ms {row['tflops']:>7.1f} TFLOP/s" if "ms" in row else " " * 29
    ok = "ok" if row["rel_err"] <= 1e-2 else "FAIL"
    print(f"{row['case']:<22}{row['impl']:<26}{timing}  err {row['rel_err']:.2e} {ok}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", required=True)
    parser.add_argument("--configs", help="comma-separated config names (default: all of CONFIGS)")
    parser.add_argument("--batches", default=",".join(map(str, BATCHES)))
    parser.add_argument("--reps", type=int, default=7)
    parser.add_argument("--inner", type=int, default=5)
    args = parser.parse_args()
    try:
        configs = [FlashConfig.parse(name) for name in args.configs.split(",")] if args.configs else CONFIGS
    except ValueError as exc:
        sys.exit(str(exc))
    started = time.perf_counter()
    rows: list[dict] = []
    for batch in map(int, args.batches.split(",")):
        run_case(batch, configs, args, rows)
    run_checks(configs, rows)
    result = dict(command=" ".join(sys.argv), device=torch.cuda.get_device_name(),
                  capability=torch.cuda.get_device_capability(), torch=torch.__version__,
                  triton=triton.__version__, cuda=torch.version.cuda, cudnn=torch.backends.cudnn.version(),
                  varlen_attn=varlen_attn is not None, wall_s=round(time.perf_counter() - started, 1), rows=rows)
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    failed = [r for r in rows if r.get("impl", "").startswith(("triton", "tiled")) and not r.get("rel_err", 1.0) <= 1e-2]
    print(f"wall {result['wall_s']} s; {len(failed)} triton rows failed or errored; wrote {args.out}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
