"""Residual add fused with the norm that follows it, one Triton pass each:
LayerNorm (vision encoder) and RMSNorm (language model).

The vision encoder's residual stream is `x = x + sublayer(...)` followed at
once by a LayerNorm of the new x (norm2 inside a block, the next block's
norm1, the merger's ln_q). Run apart that is two passes over [patches, 1280]
(an add: two reads, one write; a norm: one read, one write); fused, one
read of each input and one write of each output.

The language model's decoder layers have the same shape of stream (add, then
input/post-attention RMSNorm); there the fusion halves the small per-layer
kernels of a decode step (48 launches fewer per step for 24 layers).

Numerics follow the unfused ops: the sum is rounded to x.dtype (the
stream is kept in that dtype), then normalised in fp32 from the rounded
sum, and the result rounded once to x.dtype (RMSNorm: rounded before the
weight multiplies it, as the unfused rms_norm kernel and Hugging Face do).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _add_row(x_ptr, r_ptr, sum_ptr, offs, mask):
    """x + r of one row, stored rounded to the stream's dtype; returned (rounded) in fp32."""
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    r = tl.load(r_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    s = (x + r).to(sum_ptr.dtype.element_ty)
    tl.store(sum_ptr + offs, s, mask=mask)
    return s.to(tl.float32)


@triton.jit
def _add_layer_norm_kernel(x_ptr, r_ptr, w_ptr, b_ptr, sum_ptr, out_ptr, num_cols, eps,
                           BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < num_cols
    offs = row * num_cols + cols
    s = _add_row(x_ptr, r_ptr, sum_ptr, offs, mask)
    mean = tl.sum(s, axis=0) / num_cols
    d = tl.where(mask, s - mean, 0.0)
    var = tl.sum(d * d, axis=0) / num_cols
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    b = tl.load(b_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    y = d * tl.rsqrt(var + eps) * w + b
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def add_layer_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                   eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    assert x.shape == residual.shape, f"residual {tuple(residual.shape)} does not match {tuple(x.shape)}"
    num_cols = x.shape[-1]
    assert weight.shape == bias.shape == (num_cols,), "weight and bias must match the last dim"
    x, residual = x.contiguous(), residual.contiguous()
    total, out = torch.empty_like(x), torch.empty_like(x)
    rows = x.numel() // num_cols if num_cols else 0
    if rows:
        block = triton.next_power_of_2(num_cols)
        _add_layer_norm_kernel[(rows,)](x, residual, weight, bias, total, out, num_cols, eps,
                                        BLOCK=block, num_warps=4 if block <= 2048 else 8)
    return total, out


@triton.jit
def _add_rms_norm_kernel(x_ptr, r_ptr, w_ptr, sum_ptr, out_ptr, num_cols, eps, BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < num_cols
    offs = row * num_cols + cols
    s = _add_row(x_ptr, r_ptr, sum_ptr, offs, mask)
    mean_sq = tl.sum(s * s, axis=0) / num_cols
    normed = (s * tl.rsqrt(mean_sq + eps)).to(out_ptr.dtype.element_ty)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0).to(tl.float32)
    tl.store(out_ptr + offs, (normed.to(tl.float32) * w).to(out_ptr.dtype.element_ty), mask=mask)


def add_rms_norm(x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                 eps: float) -> tuple[torch.Tensor, torch.Tensor]:
    assert x.shape == residual.shape, f"residual {tuple(residual.shape)} does not match {tuple(x.shape)}"
    num_cols = x.shape[-1]
    assert weight.shape == (num_cols,), "weight must match the last dim"
    x, residual = x.contiguous(), residual.contiguous()
    total, out = torch.empty_like(x), torch.empty_like(x)
    rows = x.numel() // num_cols if num_cols else 0
    if rows:
        block = triton.next_power_of_2(num_cols)
        _add_rms_norm_kernel[(rows,)](x, residual, weight, total, out, num_cols, eps,
                                      BLOCK=block, num_warps=4 if block <= 2048 else 8)
    return total, out
