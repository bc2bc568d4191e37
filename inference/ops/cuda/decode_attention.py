"""Paged decode attention: one query token per sequence, split-K over the context.

Lifecycle of one call (all on the device, no host sync, so CUDA-graph capturable):
  1. partial kernel, grid (B, Hk, num_splits): a program takes one sequence, one
     KV head with all of its GQA query heads (so K/V are read once per KV head),
     and one contiguous span of the context; it walks that span in tiles of
     BLOCK_N tokens through the block table with an online softmax.
  2. if num_splits > 1, a reduce kernel, grid (B, H), merges the spans by their
     log-sum-exp. With one split the partial kernel writes the output itself.

num_splits depends only on shapes (B, Hk, block_tables.shape[1]), never on
seq_lens' values, so a captured graph stays valid for any lengths that fit the
table. Spans past a sequence's length do nothing; the reduce skips them.
"""
from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from inference.ops.cuda.paged_tile import load_kv_tile, online_softmax_step

_LOG2E = 1.4426950408889634
# Launch config, from ops_check's sweep under graph replay on one H200
# (inference/bench/results/ops_h200_sweep.json): 8 programs per SM was fastest
# or within noise of it at B=1, 64 and 256; larger tiles, more warps or
# deeper pipelining did not help.
BLOCK_N = 64  # context tokens per tile
NUM_WARPS, NUM_STAGES = 4, 2
# programs the partial kernel aims for: enough to keep every SM streaming K/V
_TARGET_PROGRAMS_PER_SM = 8


# Per-step integers (split length, table width, partial-buffer strides) are not value-specialised:
# each new class (==1, multiple of 16, other) would compile another variant mid-run.
@triton.jit(do_not_specialize=["tokens_per_split", "stride_tb", "stride_mb", "stride_mh", "stride_ms",
                               "stride_lb", "stride_lh"])
def _decode_partial_kernel(
        q_ptr, k_ptr, v_ptr, table_ptr, lens_ptr, out_ptr, mid_o_ptr, mid_lse_ptr,
        scale_log2, tokens_per_split,
        stride_qb, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
        stride_tb, stride_ob, stride_oh, stride_mb, stride_mh, stride_ms, stride_lb, stride_lh,
        head_dim,
        GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, D_PAD: tl.constexpr, BLOCK_SIZE: tl.constexpr,
        BLOCK_N: tl.constexpr, DIRECT: tl.constexpr, PRECISION: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    kv_head = tl.program_id(1)
    split = tl.program_id(2)
    seq_len = tl.load(lens_ptr + b)
    start = split * tokens_per_split
    end = tl.minimum(start + tokens_per_split, seq_len)

    offs_g = tl.arange(0, GROUP_PAD)
    offs_d = tl.arange(0, D_PAD)
    mask_g = offs_g < GROUP
    mask_d = offs_d < head_dim
    heads = kv_head * GROUP + offs_g
    q = tl.load(q_ptr + b * stride_qb + heads[:, None] * stride_qh + offs_d[None, :],
                mask=mask_g[:, None] & mask_d[None, :], other=0.0).to(k_ptr.dtype.element_ty)

    m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
    l_i = tl.zeros([GROUP_PAD], tl.float32)
    acc = tl.zeros([GROUP_PAD, D_PAD], tl.float32)
    for tile_start in range(start, end, BLOCK_N):
        offs_n = tile_start + tl.arange(0, BLOCK_N)
        mask_n = offs_n < end
        k, v = load_kv_tile(k_ptr, v_ptr, table_ptr + b * stride_tb, offs_n, mask_n, offs_d, mask_d, kv_head,
                            stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, BLOCK_SIZE)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
        s = tl.where(mask_n[None, :], s, float("-inf"))
        # every tile holds at least one valid token, so the running max stays finite
        m_i, l_i, acc = online_softmax_step(m_i, l_i, acc, s, v, PRECISION)

    # an empty span (seq_len 0, a padded batch slot) leaves l_i = 0: write zeros
    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    o = acc / l_safe[:, None]
    out_mask = mask_g[:, None] & mask_d[None, :]
    if DIRECT:
        tl.store(out_ptr + b * stride_ob + heads[:, None] * stride_oh + offs_d[None, :],
                 o.to(out_ptr.dtype.element_ty), mask=out_mask)
    else:
        tl.store(mid_o_ptr + b * stride_mb + heads[:, None] * stride_mh + split * stride_ms + offs_d[None, :],
                 o, mask=out_mask)
        tl.store(mid_lse_ptr + b * stride_lb + heads * stride_lh + split, m_i + tl.log2(l_safe), mask=mask_g)


@triton.jit(do_not_specialize=["tokens_per_split", "num_splits", "stride_mb", "stride_mh", "stride_ms",
                               "stride_lb", "stride_lh"])
def _decode_reduce_kernel(mid_o_ptr, mid_lse_ptr, lens_ptr, out_ptr, tokens_per_split, num_splits,
                          stride_mb, stride_mh, stride_ms, stride_lb, stride_lh, stride_ob, stride_oh,
                          head_dim, SPLITS_PAD: tl.constexpr, D_PAD: tl.constexpr):
    b = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    seq_len = tl.load(lens_ptr + b)
    used = tl.minimum((seq_len + tokens_per_split - 1) // tokens_per_split, num_splits)
    offs_s = tl.arange(0, SPLITS_PAD)
    offs_d = tl.arange(0, D_PAD)
    mask_s = offs_s < used
    mask_d = offs_d < head_dim
    lse = tl.load(mid_lse_ptr + b * stride_lb + head * stride_lh + offs_s, mask=mask_s, other=float("-inf"))
    m = tl.max(lse, axis=0)
    m = tl.where(m == float("-inf"), 0.0, m)
    w = tl.where(mask_s, tl.exp2(lse - m), 0.0)
    o = tl.load(mid_o_ptr + b * stride_mb + head * stride_mh + offs_s[:, None] * stride_ms + offs_d[None, :],
                mask=mask_s[:, None] & mask_d[None, :], other=0.0)
    denom = tl.sum(w, axis=0)
    denom = tl.where(denom > 0.0, denom, 1.0)
    out = tl.sum(w[:, None] * o, axis=0) / denom
    tl.store(out_ptr + b * stride_ob + head * stride_oh + offs_d, out.to(out_ptr.dtype.element_ty), mask=mask_d)


def plan_splits(batch: int, num_kv_heads: int, max_tokens: int, num_sms: int,
                target_programs: int | None = None, block_n: int = BLOCK_N) -> tuple[int, int]:
    """(num_splits, tokens_per_split) from shapes alone: split each sequence's
    context until batch * Hk * splits reaches the target program count."""
    target = target_programs or _TARGET_PROGRAMS_PER_SM * num_sms
    max_tiles = max(1, triton.cdiv(max_tokens, block_n))
    want = max(1, triton.cdiv(target, batch * num_kv_heads))
    tiles_per_split = triton.cdiv(max_tiles, min(want, max_tiles))
    return triton.cdiv(max_tiles, tiles_per_split), tiles_per_split * block_n


_SM_COUNT: dict[int, int] = {}


def _num_sms(device: torch.device) -> int:
    if device.type != "cuda":
        return 8  # the Triton interpreter on the CPU: any fixed count works
    index = device.index if device.index is not None else torch.cuda.current_device()
    if index not in _SM_COUNT:
        # Under CUDA MPS with an SM share a process sees only its share; the split plan (and so the
        # summation order) must not depend on it, or a PD decode worker diverges from the monolithic
        # engine. Workers get the physical count in DOCPIPE_DEVICE_SMS (inference/disagg/mps.py).
        forced = os.environ.get("DOCPIPE_DEVICE_SMS", "").strip()
        if forced and not forced.isdigit():
            raise ValueError(f"DOCPIPE_DEVICE_SMS={forced!r}: expected the device's SM count")
        _SM_COUNT[index] = int(forced) if forced else torch.cuda.get_device_properties(index).multi_processor_count
    return _SM_COUNT[index]


def decode_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, block_tables: torch.Tensor,
                     seq_lens: torch.Tensor, scale: float, target_programs: int | None = None,
                     block_n: int = BLOCK_N, num_warps: int = NUM_WARPS, num_stages: int = NUM_STAGES) -> torch.Tensor:
    batch, num_heads, head_dim = q.shape
    num_blocks, block_size, num_kv_heads, _ = k_cache.shape
    assert num_heads % num_kv_heads == 0, f"{num_heads} query heads do not group over {num_kv_heads} KV heads"
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1 and q.stride(-1) == 1, "head_dim must be contiguous"
    out = torch.empty_like(q)
    if batch == 0:
        return out
    group = num_heads // num_kv_heads
    num_splits, tokens_per_split = plan_splits(batch, num_kv_heads, block_tables.shape[1] * block_size,
                                               _num_sms(q.device), target_programs, block_n)
    direct = num_splits == 1
    mid_o = torch.empty((batch, num_heads, num_splits, head_dim), dtype=torch.float32, device=q.device)
    mid_lse = torch.empty((batch, num_heads, num_splits), dtype=torch.float32, device=q.device)
    d_pad = max(16, triton.next_power_of_2(head_dim))
    _decode_partial_kernel[(batch, num_kv_heads, num_splits)](
        q, k_cache, v_cache, block_tables, seq_lens, out, mid_o, mid_lse,
        scale * _LOG2E, tokens_per_split,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), block_tables.stride(0),
        out.stride(0), out.stride(1), mid_o.stride(0), mid_o.stride(1), mid_o.stride(2),
        mid_lse.stride(0), mid_lse.stride(1), head_dim,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), D_PAD=d_pad, BLOCK_SIZE=block_size,
        BLOCK_N=block_n, DIRECT=direct, PRECISION="ieee" if k_cache.dtype == torch.float32 else "tf32",
        num_warps=num_warps, num_stages=num_stages)
    if not direct:
        _decode_reduce_kernel[(batch, num_heads)](
            mid_o, mid_lse, seq_lens, out, tokens_per_split, num_splits,
            mid_o.stride(0), mid_o.stride(1), mid_o.stride(2), mid_lse.stride(0), mid_lse.stride(1),
            out.stride(0), out.stride(1), head_dim,
            SPLITS_PAD=triton.next_power_of_2(num_splits), D_PAD=d_pad)
    return out
