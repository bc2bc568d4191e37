"""Reference implementations of every op in inference.ops.base.Ops.

Attention gathers each sequence's K/V from the paged pool through its block
table and runs plain softmax attention in fp32, so the result does not depend
on block size or on where blocks sit in the pool.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from inference.ops.base import Ops


def _rotate_half(x: torch.Tensor) -> torch.Tensor:
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


def _gather_context(cache: torch.Tensor, block_table: torch.Tensor, num_tokens: int) -> torch.Tensor:
    """The first num_tokens cached rows [num_tokens, Hk, D] of one sequence."""
    block_size = cache.shape[1]
    num_blocks = -(-num_tokens // block_size)
    blocks = cache[block_table[:num_blocks].long()]  # [n, bs, Hk, D]
    return blocks.reshape(-1, *cache.shape[2:])[:num_tokens]


def _attend(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, scale: float, causal_offset: int | None) -> torch.Tensor:
    """q [Tq, H, D], k/v [Tk, Hk, D] -> [Tq, H, D]. causal_offset: absolute
    position of query 0 (query i sees keys <= offset + i); None = no mask."""
    num_heads, num_kv_heads = q.shape[1], k.shape[1]
    group = num_heads // num_kv_heads
    qf = q.float().transpose(0, 1)  # [H, Tq, D]
    kf = k.float().repeat_interleave(group, dim=1).transpose(0, 1)
    vf = v.float().repeat_interleave(group, dim=1).transpose(0, 1)
    scores = torch.matmul(qf, kf.transpose(1, 2)) * scale  # [H, Tq, Tk]
    if causal_offset is not None:
        q_pos = torch.arange(q.shape[0], device=q.device)[:, None] + causal_offset
        k_pos = torch.arange(k.shape[0], device=q.device)[None, :]
        scores = scores.masked_fill(k_pos > q_pos, float("-inf"))
    probs = torch.softmax(scores, dim=-1)
    return torch.matmul(probs, vf).transpose(0, 1).to(q.dtype)


class ReferenceOps(Ops):
    name = "reference"

    def rms_norm(self, x, weight, eps):
        xf = x.float()
        xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
        return (weight * xf.to(x.dtype)).to(x.dtype)

    def silu_and_mul(self, x):
        half = x.shape[-1] // 2
        return F.silu(x[..., :half]) * x[..., half:]

    def rotary(self, q, k, cos, sin):
        cos, sin = cos.float()[:, None, :], sin.float()[:, None, :]
        qf, kf = q.float(), k.float()
        q_out = qf * cos + _rotate_half(qf) * sin
        k_out = kf * cos + _rotate_half(kf) * sin
        return q_out.to(q.dtype), k_out.to(k.dtype)

    def store_kv(self, k, v, k_cache, v_cache, slot_mapping):
        block_size = k_cache.shape[1]
        valid = slot_mapping >= 0
        slots = slot_mapping[valid]
        blocks, offsets = slots // block_size, slots % block_size
        # index_put_ works on the strided per-layer views of the pool.
        k_cache[blocks, offsets] = k[valid].to(k_cache.dtype)
        v_cache[blocks, offsets] = v[valid].to(v_cache.dtype)

    def prefill_tiles_block(self, dtype):
        return 16  # tiles are accepted and not read: the sequences come from cu_seqlens_q

    def prefill_attention(self, q, k_cache, v_cache, cu_seqlens_q, seq_lens_k, block_tables, scale, max_seqlen_q,
                          max_seqlen_k, tiles=None):
        out = torch.empty_like(q)
        cu = cu_seqlens_q.tolist()
        for s, num_k in enumerate(seq_lens_k.tolist()):
            start, end = cu[s], cu[s + 1]
            if end == start:
                continue
            k = _gather_context(k_cache, block_tables[s], num_k)
            v = _gather_context(v_cache, block_tables[s], num_k)
            out[start:end] = _attend(q[start:end], k, v, scale, causal_offset=num_k - (end - start))
        return out

    def decode_attention(self, q, k_cache, v_cache, block_tables, seq_lens, scale):
        out = torch.empty_like(q)
        for b, num_k in enumerate(seq_lens.tolist()):
            k = _gather_context(k_cache, block_tables[b], num_k)
            v = _gather_context(v_cache, block_tables[b], num_k)
            out[b : b + 1] = _attend(q[b : b + 1], k, v, scale, causal_offset=None)
        return out

    def vision_tiles_block(self, head_dim, dtype):
        return 128  # tiles are accepted and not read: the images come from cu_seqlens

    def vision_attention(self, q, k, v, cu_seqlens, max_seqlen, scale, tiles=None):
        # tiles (graph-shaped calls): the images are cu_seqlens' all the same; rows after them stay unset
        out = torch.empty_like(q)
        cu = cu_seqlens.tolist()
        for start, end in zip(cu[:-1], cu[1:]):
            out[start:end] = _attend(q[start:end], k[start:end], v[start:end], scale, causal_offset=None)
        return out
