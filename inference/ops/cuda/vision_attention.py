"""Bidirectional attention within each image of a packed vision batch.

Two paths, same result:
- torch's flash-attention varlen entry (torch.nn.attention.varlen.varlen_attn)
  when this torch has it with a `scale` argument and the dtype is bf16/fp16:
  one launch for the whole packed batch, no host sync;
- otherwise SDPA per image (one host sync to read cu_seqlens; the vision
  encoder is never graph-captured). Images of equal length are batched into
  one SDPA call, since block crops often share a size.
When every image of the batch has the same length (layout pages: T ==
num_images * max_seqlen, known without a sync) the batch is also a plain
[B, H, N, D] SDPA problem, which cuDNN's fused attention may run faster than
flash varlen at head dim 80. The first call per (length, heads, dim, dtype)
times both once (events, a few calls each) and keeps the faster; an error in
the cuDNN path keeps varlen.
"""
from __future__ import annotations

import inspect

import torch
import torch.nn.functional as F

from inference.ops.shape_groups import pow2_parts
from inference.worker.h2d import to_device

try:  # present in torch >= 2.9, its signature has moved between releases
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
    _VARLEN_HAS_SCALE = "scale" in inspect.signature(_varlen_attn).parameters
except ImportError:
    _varlen_attn, _VARLEN_HAS_SCALE = None, False


def varlen_available(q: torch.Tensor) -> bool:
    return (_varlen_attn is not None and _VARLEN_HAS_SCALE and q.is_cuda
            and q.dtype in (torch.bfloat16, torch.float16))


_UNIFORM_CHOICE: dict[tuple, str] = {}  # (length, heads, dim, dtype) -> "cudnn" | "varlen"


def uniform_cudnn(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, num_images: int, scale: float) -> torch.Tensor:
    """All images of one length: [B*N, H, D] viewed as [B, H, N, D], cuDNN SDPA.

    cuDNN builds an execution plan per input shape (costly, cached), and the
    number of images per encoder call varies from step to step, so B is cut
    into power-of-two groups: at most log2(B) calls, from a handful of shapes."""
    from torch.nn.attention import SDPBackend, sdpa_kernel

    length, heads, dim = q.shape[0] // num_images, q.shape[1], q.shape[2]
    out = torch.empty_like(q)
    start = 0
    with sdpa_kernel([SDPBackend.CUDNN_ATTENTION]):
        for group in pow2_parts(num_images):
            rows = slice(start * length, (start + group) * length)
            qb, kb, vb = (t[rows].view(group, length, heads, dim).transpose(1, 2) for t in (q, k, v))
            o = F.scaled_dot_product_attention(qb, kb, vb, scale=scale)
            out[rows] = o.transpose(1, 2).reshape(group * length, heads, dim)
            start += group
    return out


def _time_ms(fn, reps: int = 3) -> float:
    fn()
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(reps):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / reps


def _uniform_choice(q, k, v, num_images: int, varlen, scale: float) -> str:
    key = (q.shape[0] // num_images, q.shape[1], q.shape[2], q.dtype)
    if key not in _UNIFORM_CHOICE:
        try:
            cudnn_ms = _time_ms(lambda: uniform_cudnn(q, k, v, num_images, scale))
        except RuntimeError:  # no cuDNN attention for this shape/build
            cudnn_ms = float("inf")
        _UNIFORM_CHOICE[key] = "cudnn" if cudnn_ms < _time_ms(varlen) else "varlen"
    return _UNIFORM_CHOICE[key]


def vision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     max_seqlen: int, scale: float, use_varlen: bool = True) -> torch.Tensor:
    assert q.shape == k.shape == v.shape, "vision q, k, v must share [T, H, D]"
    if use_varlen and varlen_available(q):
        cu = cu_seqlens.to(torch.int32)
        varlen = lambda: _varlen_attn(q, k, v, cu, cu, max_seqlen, max_seqlen, scale=scale)  # noqa: E731
        num_images = cu_seqlens.numel() - 1
        if q.shape[0] == num_images * max_seqlen and _uniform_choice(q, k, v, num_images, varlen, scale) == "cudnn":
            return uniform_cudnn(q, k, v, num_images, scale)
        return varlen()
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
        idx = (to_device(starts, q.device, torch.long)[:, None]
               + torch.arange(length, device=q.device)[None, :]).reshape(-1)
        # [n*length, H, D] -> [n, H, length, D]
        qi, ki, vi = (t.index_select(0, idx).view(len(starts), length, *t.shape[1:]).transpose(1, 2)
                      for t in (q, k, v))
        oi = F.scaled_dot_product_attention(qi, ki, vi, scale=scale)
        out.index_copy_(0, idx, oi.transpose(1, 2).reshape(-1, *q.shape[1:]))
    return out
