"""Device functions shared by the paged attention kernels (prefill and
decode): read one tile of K/V through a block table, and fold one tile of
scores into a running (flash-attention style) softmax. Inlined by Triton into
each kernel, so the kernels compile to what they did with the code written out."""
from __future__ import annotations

import triton
import triton.language as tl


@triton.jit
def load_kv_tile(k_ptr, v_ptr, table_row_ptr, offs_n, mask_n, offs_d, mask_d, kv_head,
                 stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, BLOCK_SIZE: tl.constexpr):
    """K and V [BLOCK_N, D_PAD] of context tokens offs_n (masked rows read as 0)."""
    block = tl.load(table_row_ptr + offs_n // BLOCK_SIZE, mask=mask_n, other=0).to(tl.int64)
    in_block = (offs_n % BLOCK_SIZE).to(tl.int64)
    kv_mask = mask_n[:, None] & mask_d[None, :]
    k = tl.load(k_ptr + block[:, None] * stride_kb + in_block[:, None] * stride_ks
                + kv_head * stride_kh + offs_d[None, :], mask=kv_mask, other=0.0)
    v = tl.load(v_ptr + block[:, None] * stride_vb + in_block[:, None] * stride_vs
                + kv_head * stride_vh + offs_d[None, :], mask=kv_mask, other=0.0)
    return k, v


@triton.jit
def online_softmax_step(m_i, l_i, acc, s, v, PRECISION: tl.constexpr):
    """Fold scores s [M, N] (log2 domain, masked entries -inf; at least one
    finite per row so far) and values v [N, D] into (max, sum, accumulator)."""
    m_new = tl.maximum(m_i, tl.max(s, axis=1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, axis=1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc
