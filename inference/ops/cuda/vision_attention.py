"""Bidirectional attention within each image of a packed vision batch.

Two paths, same result:
- torch's flash-attention varlen entry (torch.nn.attention.varlen.varlen_attn)
  when this torch has it with a `scale` argument and the dtype is bf16/fp16:
  one launch for the whole packed batch, no host sync;
- otherwise SDPA per image (one host sync to read cu_seqlens; the vision
  encoder is never graph-captured). Images of equal length are batched into
  one SDPA call, since block crops often share a size.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

try:  # present in torch >= 2.9, its signature has moved between releases
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
    _VARLEN_HAS_SCALE = "scale" in inspect.signature(_varlen_attn).parameters
except ImportError:
    _varlen_attn, _VARLEN_HAS_SCALE = None, False


def varlen_available(q: torch.Tensor) -> bool:
    return (_varlen_attn is not None and _VARLEN_HAS_SCALE and q.is_cuda
            and q.dtype in (torch.bfloat16, torch.float16))


def vision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     max_seqlen: int, scale: float, use_varlen: bool = True) -> torch.Tensor:
    assert q.shape == k.shape == v.shape, "vision q, k, v must share [T, H, D]"
    if use_varlen and varlen_available(q):
        cu = cu_seqlens.to(torch.int32)
        return _varlen_attn(q, k, v, cu, cu, max_seqlen, max_seqlen, scale=scale)
    return _per_length_sdpa(q, k, v, cu_seqlens, scale)


def _per_length_sdpa(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     scale: float) -> torch.Tensor:
    bounds = cu_seqlens.tolist()
    by_length: dict[int, list[int]] = {}
    for start, end in zip(bounds[:-1], bounds[1:]):
        if end > start:
            by_length.setdefault(end - start, []).append(start)
    out = torch.empty_like(q)
    for length, starts in by_length.items():
        # token index of every image of this length: [n, length]
        idx = (torch.tensor(starts, device=q.device)[:, None]
               + torch.arange(length, device=q.device)[None, :]).reshape(-1)
        # [n*length, H, D] -> [n, H, length, D]
        qi, ki, vi = (t.index_select(0, idx).view(len(starts), length, *t.shape[1:]).transpose(1, 2)
                      for t in (q, k, v))
        oi = F.scaled_dot_product_attention(qi, ki, vi, scale=scale)
        out.index_copy_(0, idx, oi.transpose(1, 2).reshape(-1, *q.shape[1:]))
    return out
