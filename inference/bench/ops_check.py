"""Check and time every CUDA op at MinerU2.5 shapes (run on a GPU).

    python3 -m inference.bench.ops_check --out DIR   (from the repo root)

Each case draws fresh random inputs, poisons the allocator's free memory with
NaN (an unwritten output element then fails), compares the op with a float64
oracle written here from the contracts in inference/ops/base.py
(‖out − ref‖/‖ref‖ ≤ 1e-2 for bf16 operands, ≤ 1e-5 for fp32), and times it
with triton.testing.do_bench (median). The device's copy bandwidth and bf16
matmul rate are measured in the same run as ceilings. Attention reads rotate
over the 24 layers of the pool so timings are not served from L2. Prints a
table; writes DIR/ops_check.json; exits 1 if any check fails.
"""
from __future__ import annotations

import argparse
import json
import math
import random
import traceback
from pathlib import Path

import torch
import torch.nn.functional as F
import triton
from triton.testing import do_bench

from inference.ops.cuda import Ops
from inference.ops.cuda.decode_attention import decode_attention, plan_splits
from inference.ops.cuda.prefill_attention import prefill_attention
from inference.ops.cuda.vision_attention import varlen_available, vision_attention

DEV = "cuda"
TOL = {torch.bfloat16: 1e-2, torch.float32: 1e-5}
HIDDEN, INTER, H, HK, D, LAYERS = 896, 4864, 14, 2, 64, 24  # MinerU2.5 LM
VH, VD = 16, 80  # MinerU2.5 vision attention heads and head dim
OPS = Ops()
ROWS: list[dict] = []


def poison() -> None:
    """NaN into the allocator's free blocks, large (>1 MiB) and small pools both."""
    torch.empty(1 << 28, device=DEV).fill_(float("nan"))
    [torch.empty(1 << 18, device=DEV).fill_(float("nan")) for _ in range(32)]


def rel_err(out: torch.Tensor, ref: torch.Tensor) -> float:
    err = ((out.double() - ref.double()).norm() / ref.double().norm()).item()
    return float("nan") if math.isnan(err) else err


def graph_ms(fn, calls: int = LAYERS) -> float | None:
    """Per-call time of `calls` calls captured in one CUDA graph (launch gaps
    gone, as in the engine's captured decode step); None if not capturable."""
    try:
        fn()
        torch.cuda.synchronize()
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            for _ in range(calls):
                fn()
        return do_bench(graph.replay, warmup=25, rep=100, return_mode="median") / calls
    except RuntimeError:
        torch.cuda.synchronize()
        return None


def record(op: str, case: str, dtype: torch.dtype, err: float, fn, bytes_moved: float = 0.0, flops: float = 0.0,
           capturable: bool = True) -> None:
    eager = do_bench(fn, warmup=25, rep=100, return_mode="median")
    graph = graph_ms(fn) if capturable else None
    ms = graph or eager  # rates from the graph time where there is one
    ROWS.append({"op": op, "case": case, "dtype": str(dtype).replace("torch.", ""), "rel_err": err,
                 "ok": bool(err <= TOL[dtype]), "eager_us": eager * 1e3, "graph_us": graph * 1e3 if graph else None,
                 "tb_per_s": bytes_moved / ms / 1e9 if bytes_moved else None,
                 "tflop_per_s": flops / ms / 1e9 if flops else None})


# ---- float64 oracles ---------------------------------------------------------------------------
def rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def attend64(q, k, v, scale, causal_offset):
    """q [Tq, H, D], k/v [Tk, Hk, D] in float64; query i sees keys <= offset + i."""
    group = q.shape[1] // k.shape[1]
    q, k, v = (t.double().transpose(0, 1) for t in (q, k.repeat_interleave(group, 1), v.repeat_interleave(group, 1)))
    s = q @ k.transpose(1, 2) * scale
    if causal_offset is not None:
        pos = torch.arange(q.shape[1], device=q.device)[:, None] + causal_offset
        s = s.masked_fill(torch.arange(k.shape[1], device=q.device)[None, :] > pos, float("-inf"))
    return (s.softmax(-1) @ v).transpose(0, 1)


def context64(cache, table_row, n):
    bs = cache.shape[1]
    return cache[table_row[: -(-n // bs)].long()].reshape(-1, *cache.shape[2:])[:n].double()


# ---- inputs ------------------------------------------------------------------------------------
def paged_pool(lens, dtype, block_size=16, width=None):
    """Pool [blocks, 24 layers, 2, bs, Hk, D] with each sequence's blocks scattered."""
    per_seq = [-(-n // block_size) for n in lens]
    width = width or max(per_seq)
    pool = torch.randn(sum(per_seq) + 1, LAYERS, 2, block_size, HK, D, dtype=dtype, device=DEV)
    ids = torch.randperm(pool.shape[0], device=DEV).to(torch.int32)
    table = torch.zeros(len(lens), width, dtype=torch.int32, device=DEV)
    offsets = [0] + list(torch.tensor(per_seq).cumsum(0).tolist())
    for row, n in enumerate(per_seq):
        table[row, :n] = ids[offsets[row]:offsets[row] + n]
    return pool, table


def cu_of(lens):
    return torch.tensor([0] + torch.tensor(lens).cumsum(0).tolist(), dtype=torch.int32, device=DEV)


# ---- cases -------------------------------------------------------------------------------------
def check_elementwise(dtype, tokens):
    x, w = torch.randn(tokens, HIDDEN, dtype=dtype, device=DEV) * 3, torch.randn(HIDDEN, dtype=dtype, device=DEV)
    poison()
    x64 = x.double()
    ref = x64 * torch.rsqrt(x64.pow(2).mean(-1, keepdim=True) + 1e-6) * w.double()
    record("rms_norm", f"T={tokens}x{HIDDEN}", dtype, rel_err(OPS.rms_norm(x, w, 1e-6), ref),
           lambda: OPS.rms_norm(x, w, 1e-6), 2 * x.numel() * x.element_size())
    g = torch.randn(tokens, 2 * INTER, dtype=dtype, device=DEV) * 2
    poison()
    a, b = g.double().chunk(2, -1)
    record("silu_and_mul", f"T={tokens}x{INTER}", dtype, rel_err(OPS.silu_and_mul(g), F.silu(a) * b),
           lambda: OPS.silu_and_mul(g), 1.5 * g.numel() * g.element_size())
    v = torch.randn(tokens, 5120, dtype=dtype, device=DEV) * 3
    v64 = v.double()
    record("quick_gelu", f"T={tokens}x5120", dtype, rel_err(OPS.quick_gelu(v), v64 * torch.sigmoid(1.702 * v64)),
           lambda: OPS.quick_gelu(v), 2 * v.numel() * v.element_size())
    qkv = torch.randn(tokens, H + 2 * HK, D, dtype=dtype, device=DEV)
    q, k = qkv[:, :H], qkv[:, H:H + HK]
    ang = torch.rand(tokens, D, device=DEV) * 1000
    cos, sin = ang.cos().to(dtype), ang.sin().to(dtype)
    poison()
    qo, ko = OPS.rotary(q, k, cos, sin)
    ref_q = q.double() * cos.double()[:, None] + rotate_half(q.double()) * sin.double()[:, None]
    ref_k = k.double() * cos.double()[:, None] + rotate_half(k.double()) * sin.double()[:, None]
    err = max(rel_err(qo, ref_q), rel_err(ko, ref_k))
    record("rotary", f"T={tokens} q{H}/k{HK}x{D}", dtype, err, lambda: OPS.rotary(q, k, cos, sin),
           2 * (q.numel() + k.numel() + 2 * cos.numel()) * q.element_size())


def check_store_kv(dtype, tokens):
    pool, _ = paged_pool([tokens * 2], dtype)
    slots = torch.randperm(pool.shape[0] * 16, device=DEV)[:tokens]
    k, v = (torch.randn(tokens, HK, D, dtype=dtype, device=DEV) for _ in range(2))
    OPS.store_kv(k, v, pool[:, 5, 0], pool[:, 5, 1], slots)
    flat = pool[:, 5].permute(1, 0, 2, 3, 4).reshape(2, -1, HK, D)
    ok = torch.equal(flat[0][slots], k) and torch.equal(flat[1][slots], v)
    record("store_kv", f"T={tokens}", dtype, 0.0 if ok else float("inf"),
           lambda: OPS.store_kv(k, v, pool[:, 5, 0], pool[:, 5, 1], slots), 4 * k.numel() * k.element_size())


def check_decode(dtype, lens, sweep=()):
    pool, table = paged_pool(lens, dtype)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEV)
    q = torch.randn(len(lens), H, D, dtype=dtype, device=DEV)
    layer = iter(range(1 << 40))
    kv = lambda i: (pool[:, i % LAYERS, 0], pool[:, i % LAYERS, 1])  # noqa: E731
    ref = torch.stack([attend64(q[b:b + 1], context64(kv(3)[0], table[b], n), context64(kv(3)[1], table[b], n),
                                0.125, None)[0] for b, n in enumerate(lens)])
    nbytes = sum(lens) * HK * D * 2 * q.element_size() + 2 * q.numel() * q.element_size()
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    for target, block_n, warps, stages in [(None, None, None, None)] + list(sweep):
        cfg = {k: v for k, v in zip(("target_programs", "block_n", "num_warps", "num_stages"),
                                     (target, block_n, warps, stages)) if v is not None}
        splits = plan_splits(len(lens), HK, table.shape[1] * 16, sms, target, block_n or 64)[0]
        poison()
        err = rel_err(decode_attention(q, *kv(3), table, seq_lens, 0.125, **cfg), ref)
        label = " ".join(f"{k.split('_')[-1]}={v}" for k, v in cfg.items()) or "default"
        record("decode_attention", f"B={len(lens)} ctx {min(lens)}-{max(lens)} splits={splits} {label}", dtype, err,
               lambda: decode_attention(q, *kv(next(layer)), table, seq_lens, 0.125, **cfg), nbytes)
        ROWS[-1]["sweep_batch"] = len(lens) if cfg else None


def check_prefill(dtype, lens_k, lens_q, label, sweep=()):
    pool, table = paged_pool(lens_k, dtype)
    kc, vc = pool[:, 7, 0], pool[:, 7, 1]
    cu, seq_lens = cu_of(lens_q), torch.tensor(lens_k, dtype=torch.int32, device=DEV)
    q = torch.randn(sum(lens_q), H, D, dtype=dtype, device=DEV)
    args = (q, kc, vc, cu, seq_lens, table, D ** -0.5, max(lens_q), max(lens_k))
    poison()
    out = OPS.prefill_attention(*args)
    ref = torch.cat([attend64(q[cu[s]:cu[s + 1]], context64(kc, table[s], nk), context64(vc, table[s], nk),
                              D ** -0.5, nk - nq) for s, (nk, nq) in enumerate(zip(lens_k, lens_q))])
    flops = sum(4 * H * D * (nq * (nk - nq) + nq * (nq + 1) / 2) for nk, nq in zip(lens_k, lens_q))
    record("prefill_attention", label, dtype, rel_err(out, ref), lambda: OPS.prefill_attention(*args), flops=flops)
    for block_m, block_n, warps, stages in sweep:
        cfg = dict(block_m=block_m, block_n=block_n, num_warps=warps, num_stages=stages)
        poison()
        err = rel_err(prefill_attention(*args, **cfg), ref)
        record("prefill_attention", f"{label} m={block_m} n={block_n} w={warps} s={stages}", dtype, err,
               lambda: prefill_attention(*args, **cfg), flops=flops)
    if len(lens_k) == 1 and lens_k == lens_q and dtype == torch.bfloat16:  # baseline: SDPA on contiguous K/V
        kk, vv = (context64(c, table[0], lens_k[0]).to(dtype).transpose(0, 1)[None] for c in (kc, vc))
        qq = q.transpose(0, 1)[None]
        sdpa = lambda: F.scaled_dot_product_attention(qq, kk, vv, is_causal=True, enable_gqa=True)  # noqa: E731
        record("prefill_attention", label + " SDPA baseline", dtype, rel_err(sdpa()[0].transpose(0, 1), ref), sdpa,
               flops=flops)


def check_vision(dtype, lens, label):
    cu = cu_of(lens)
    q, k, v = (torch.randn(sum(lens), VH, VD, dtype=dtype, device=DEV) for _ in range(3))
    ref = torch.cat([attend64(q[a:b], k[a:b], v[a:b], VD ** -0.5, None) for a, b in zip(cu[:-1], cu[1:])])
    flops = sum(4 * VH * VD * n * n for n in lens)
    paths = [True, False] if varlen_available(q) else [False]
    for use_varlen in paths:
        fn = lambda: vision_attention(q, k, v, cu, max(lens), VD ** -0.5, use_varlen=use_varlen)  # noqa: E731
        poison()
        record("vision_attention", f"{label} {'varlen' if use_varlen else 'sdpa/len'}", dtype, rel_err(fn(), ref), fn,
               flops=flops, capturable=use_varlen)


def guarded(check, *args) -> None:
    """A case that raises becomes a failed row, so the other cases still run."""
    try:
        check(*args)
    except Exception:  # noqa: BLE001 - reported in the table and the JSON
        traceback.print_exc()
        ROWS.append({"op": check.__name__, "case": repr(args)[:80], "dtype": "-", "rel_err": float("nan"),
                     "ok": False, "eager_us": float("nan"), "graph_us": None, "tb_per_s": None, "tflop_per_s": None})


def ceilings() -> dict:
    src = torch.randn(1 << 28, device=DEV)  # 1 GiB
    dst = torch.empty_like(src)
    copy_ms = do_bench(lambda: dst.copy_(src), return_mode="median")
    a, b = (torch.randn(8192, 8192, dtype=torch.bfloat16, device=DEV) for _ in range(2))
    mm_ms = do_bench(lambda: a @ b, return_mode="median")
    return {"copy_tb_per_s": 2 * src.numel() * 4 / copy_ms / 1e9, "bf16_matmul_tflop_per_s": 2 * 8192 ** 3 / mm_ms / 1e9}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.manual_seed(args.seed)
    rnd = random.Random(args.seed)
    ceil = ceilings()
    for dtype, tokens in [(torch.bfloat16, 256), (torch.bfloat16, 8192), (torch.float32, 1024)]:
        guarded(check_elementwise, dtype, tokens)
        guarded(check_store_kv, dtype, tokens)
    sweep = [(528, 64, 4, 2), (1056, 128, 4, 2), (1056, 64, 4, 3), (2112, 64, 4, 2)]
    guarded(check_decode, torch.bfloat16, [1700], sweep)
    for batch in (64, 256):
        guarded(check_decode, torch.bfloat16, [rnd.randint(300, 1700) for _ in range(batch)], sweep)
    guarded(check_decode, torch.float32, [rnd.randint(1, 1700) for _ in range(16)])
    prefill_sweep = {torch.bfloat16: [(128, 64, 4, 3), (128, 128, 8, 2), (64, 64, 4, 2), (64, 64, 4, 3),
                                      (128, 64, 8, 3), (64, 128, 4, 2)],
                     torch.float32: [(32, 32, 4, 2), (16, 64, 4, 2)]}
    for dtype in (torch.bfloat16, torch.float32):
        guarded(check_prefill, dtype, [1389], [1389], "layout 1389 fresh", prefill_sweep[dtype])
        guarded(check_prefill, dtype, [1024 + 512], [512], "chunk 512 after 1024")
    blocks = [180] * 8 + [60] * 2 + [468, 100]
    guarded(check_prefill, torch.bfloat16, blocks, blocks, "12 block crops fresh")
    guarded(check_vision, torch.bfloat16, [5476], "layout image 5476")
    guarded(check_vision, torch.bfloat16, [640] * 8 + [160] * 2 + [1792, 320], "12 crops")
    guarded(check_vision, torch.float32, [600, 37, 600], "3 images")

    print(f"ceilings: copy {ceil['copy_tb_per_s']:.2f} TB/s, bf16 matmul {ceil['bf16_matmul_tflop_per_s']:.0f} TFLOP/s")
    print(f"{'op':17} {'case':58} {'dtype':8} {'rel_err':>8} ok {'eager_us':>8} {'graph_us':>8} {'TB/s':>5} TFLOP/s")
    best = {}  # the table shows each batch's 3 fastest swept configs; the JSON has all
    for r in ROWS:
        if r.get("sweep_batch"):
            best.setdefault(r["sweep_batch"], []).append(r)
    shown = [r for rs in best.values() for r in sorted(rs, key=lambda r: r["graph_us"] or 1e9)[:3]]
    for r in ROWS:
        if r.get("sweep_batch") and r not in shown:
            continue
        tb = f"{r['tb_per_s']:.2f}" if r["tb_per_s"] else ""
        tf = f"{r['tflop_per_s']:.1f}" if r["tflop_per_s"] else ""
        gr = f"{r['graph_us']:.1f}" if r["graph_us"] else ""
        print(f"{r['op'][:17]:17} {r['case'][:58]:58} {r['dtype']:8} {r['rel_err']:8.1e} {'y' if r['ok'] else 'N':>2} "
              f"{r['eager_us']:8.1f} {gr:>8} {tb:>5} {tf}")
    meta = {"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
            "varlen_attn": varlen_available(torch.empty(1, dtype=torch.bfloat16, device=DEV))}
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "ops_check.json").write_text(json.dumps({**meta, "ceilings": ceil, "results": ROWS}, indent=1))
    return 0 if all(r["ok"] for r in ROWS) else 1


if __name__ == "__main__":
    raise SystemExit(main())
