"""Paged causal prefill attention (Triton, flash-attention style).

One kernel serves both a fresh prompt and a chunk after a cached prefix: the
new tokens' K/V are already in the paged cache (store_kv ran first), so every
key is read through the block table and no contiguous copy is made. Query i of
sequence s sits at position seq_lens_k[s] - len_q(s) + i and sees keys 0..pos.

Grid (q tiles of max_seqlen_q, B, H); tiles past a sequence's length do no
work. K/V tiles of a KV head are re-read by its GQA query heads through L2.
Or, given `tiles` (int32 sequence << 16 | query tile, -1 = none: the list
vision_flash.flash_tiles makes), grid (len(tiles), 1, H): the launch then
depends on the list's length alone, as a CUDA graph replayed for many
batches needs; rows no tile covers (a graph's padding) are left unwritten.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from inference.ops.cuda.paged_tile import load_kv_tile, online_softmax_step

_LOG2E = 1.4426950408889634


@triton.jit(do_not_specialize=["stride_tb"])  # the table width changes every step
def _prefill_kernel(
        q_ptr, k_ptr, v_ptr, out_ptr, cu_q_ptr, lens_k_ptr, table_ptr, tiles_ptr, scale_log2,
        stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
        stride_ot, stride_oh, stride_tb, head_dim,
        GROUP: tl.constexpr, D_PAD: tl.constexpr, BLOCK_SIZE: tl.constexpr,
        BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, PRECISION: tl.constexpr, TILED: tl.constexpr):
    if TILED:
        entry = tl.load(tiles_ptr + tl.program_id(0))
        if entry < 0:
            return
        tile_m = entry & 0xFFFF
        b = (entry >> 16).to(tl.int64)
    else:
        tile_m = tl.program_id(0)
        b = tl.program_id(1).to(tl.int64)
    head = tl.program_id(2)
    kv_head = head // GROUP
    q_start = tl.load(cu_q_ptr + b).to(tl.int64)
    q_len = (tl.load(cu_q_ptr + b + 1) - q_start).to(tl.int32)
    ctx_len = tl.load(lens_k_ptr + b).to(tl.int32)
    prefix = ctx_len - q_len

    offs_m = tile_m * BLOCK_M + tl.arange(0, BLOCK_M)
    offs_d = tl.arange(0, D_PAD)
    mask_m = offs_m < q_len
    mask_d = offs_d < head_dim
    q = tl.load(q_ptr + (q_start + offs_m)[:, None] * stride_qt + head * stride_qh + offs_d[None, :],
                mask=mask_m[:, None] & mask_d[None, :], other=0.0).to(k_ptr.dtype.element_ty)
    pos_m = prefix + offs_m
    # keys up to the tile's last query position; a tile past q_len does nothing
    kv_end = tl.minimum(ctx_len, prefix + (tile_m + 1) * BLOCK_M)
    kv_end = tl.where(tile_m * BLOCK_M < q_len, kv_end, 0)

    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)
    acc = tl.zeros([BLOCK_M, D_PAD], tl.float32)
    for tile_start in range(0, kv_end, BLOCK_N):
        offs_n = tile_start + tl.arange(0, BLOCK_N)
        mask_n = offs_n < kv_end
        k, v = load_kv_tile(k_ptr, v_ptr, table_ptr + b * stride_tb, offs_n, mask_n, offs_d, mask_d, kv_head,
                            stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, BLOCK_SIZE)
        s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2
        visible = (offs_n[None, :] <= pos_m[:, None]) & mask_n[None, :]
        s = tl.where(visible, s, float("-inf"))
        # key 0 is visible to every row of the first tile, so the running max stays finite
        m_i, l_i, acc = online_softmax_step(m_i, l_i, acc, s, v, PRECISION)

    l_safe = tl.where(l_i > 0.0, l_i, 1.0)
    o = acc / l_safe[:, None]
    tl.store(out_ptr + (q_start + offs_m)[:, None] * stride_ot + head * stride_oh + offs_d[None, :],
             o.to(out_ptr.dtype.element_ty), mask=mask_m[:, None] & mask_d[None, :])


def prefill_attention(q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, cu_seqlens_q: torch.Tensor,
                      seq_lens_k: torch.Tensor, block_tables: torch.Tensor, scale: float, max_seqlen_q: int,
                      max_seqlen_k: int, block_m: int | None = None, block_n: int | None = None,
                      num_warps: int = 4, num_stages: int = 2, tiles: torch.Tensor | None = None) -> torch.Tensor:
    """tiles: int32 flash_tiles(q lengths, tiles_block_m(dtype), slots) on q's device; the grid
    then comes from it (max_seqlen_q and the batch size are not read)."""
    num_tokens, num_heads, head_dim = q.shape
    _, block_size, num_kv_heads, _ = k_cache.shape
    assert num_heads % num_kv_heads == 0, f"{num_heads} query heads do not group over {num_kv_heads} KV heads"
    assert k_cache.stride(-1) == 1 and v_cache.stride(-1) == 1 and q.stride(-1) == 1, "head_dim must be contiguous"
    batch = seq_lens_k.shape[0]
    out = torch.empty_like(q)
    if tiles is not None:
        if tiles.dtype != torch.int32 or tiles.dim() != 1:
            raise ValueError(f"prefill_attention: tiles must be a 1-D int32 tensor, got {tiles.dtype} {tuple(tiles.shape)}")
        if num_tokens == 0 or tiles.numel() == 0:
            return out
    elif num_tokens == 0 or batch == 0 or max_seqlen_q == 0:
        return out
    # Defaults from ops_check's sweep on one H200 (ops_h200.json), layout prompt of
    # 1389 tokens: bf16 64x128 tiles 34 us against 48 us for 128x64; fp32 (no
    # tensor-core path at ieee precision) 16x64 tiles 0.44 ms against 5.0 ms for 64x64.
    is_fp32 = k_cache.dtype == torch.float32
    block_m = block_m or tiles_block_m(k_cache.dtype)
    block_n = block_n or (64 if is_fp32 else 128)
    if tiles is not None:
        grid = (tiles.numel(), 1, num_heads)
    else:
        grid = (triton.cdiv(max_seqlen_q, block_m), batch, num_heads)
    _prefill_kernel[grid](
        q, k_cache, v_cache, out, cu_seqlens_q, seq_lens_k, block_tables,
        cu_seqlens_q if tiles is None else tiles, scale * _LOG2E,
        q.stride(0), q.stride(1), k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2), out.stride(0), out.stride(1),
        block_tables.stride(0), head_dim,
        GROUP=num_heads // num_kv_heads, D_PAD=max(16, triton.next_power_of_2(head_dim)), BLOCK_SIZE=block_size,
        BLOCK_M=block_m, BLOCK_N=block_n, PRECISION="ieee" if k_cache.dtype == torch.float32 else "tf32",
        TILED=tiles is not None, num_warps=num_warps, num_stages=num_stages)
    return out


def tiles_block_m(dtype: torch.dtype) -> int:
    """Query rows a program takes by default (and per `tiles` entry)."""
    return 16 if dtype == torch.float32 else 64
