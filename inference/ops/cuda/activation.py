"""Activations as single Triton passes.

silu_and_mul (the LM's gated MLP): x[..., 2*I] -> silu(x[..., :I]) * x[..., I:].
quick_gelu (the vision MLP): x * sigmoid(1.702 x); torch runs it as three
elementwise kernels over the [patches, 5120] activation, ~10% of a layout
page's encoder time on the H200, so one read and one write matter.
Both compute in fp32 and round once to x.dtype.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

_BLOCK = 1024


@triton.jit
def _silu_and_mul_kernel(x_ptr, out_ptr, stride_x_row, stride_out_row, inner,
                         BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.program_id(1) * BLOCK + tl.arange(0, BLOCK)
    mask = cols < inner
    gate = tl.load(x_ptr + row * stride_x_row + cols, mask=mask, other=0.0).to(tl.float32)
    up = tl.load(x_ptr + row * stride_x_row + inner + cols, mask=mask, other=0.0).to(tl.float32)
    y = gate / (1.0 + tl.exp(-gate)) * up
    tl.store(out_ptr + row * stride_out_row + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    assert x.shape[-1] % 2 == 0, f"last dim {x.shape[-1]} is not 2*I"
    inner = x.shape[-1] // 2
    rows = x.reshape(-1, 2 * inner)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty((rows.shape[0], inner), dtype=x.dtype, device=x.device)
    if rows.shape[0] > 0 and inner > 0:
        grid = (rows.shape[0], triton.cdiv(inner, _BLOCK))
        _silu_and_mul_kernel[grid](rows, out, rows.stride(0), out.stride(0), inner, BLOCK=_BLOCK)
    return out.view(*x.shape[:-1], inner)


@triton.jit
def _quick_gelu_kernel(x_ptr, out_ptr, numel, BLOCK: tl.constexpr):
    offs = tl.program_id(0).to(tl.int64) * BLOCK + tl.arange(0, BLOCK)
    mask = offs < numel
    x = tl.load(x_ptr + offs, mask=mask, other=0.0).to(tl.float32)
    y = x / (1.0 + tl.exp(-1.702 * x))
    tl.store(out_ptr + offs, y.to(out_ptr.dtype.element_ty), mask=mask)


def quick_gelu(x: torch.Tensor) -> torch.Tensor:
    flat = x.contiguous()
    out = torch.empty_like(flat)
    if flat.numel():
        _quick_gelu_kernel[(triton.cdiv(flat.numel(), 4 * _BLOCK),)](flat, out, flat.numel(), BLOCK=4 * _BLOCK)
    return out
