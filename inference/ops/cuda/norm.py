"""RMSNorm as one Triton kernel: one program per row, the row held in registers.

Contract (inference/ops/base.py): statistics in fp32, result in x.dtype. Like
Hugging Face's Qwen2RMSNorm, the normalized row is rounded to x.dtype before the
weight multiplies it, so bf16 outputs match the model's reference bit for bit
in most elements.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rms_norm_kernel(x_ptr, w_ptr, out_ptr, stride_x_row, stride_out_row, num_cols, eps,
                     BLOCK: tl.constexpr):
    row = tl.program_id(0).to(tl.int64)
    cols = tl.arange(0, BLOCK)
    mask = cols < num_cols
    x = tl.load(x_ptr + row * stride_x_row + cols, mask=mask, other=0.0).to(tl.float32)
    mean_sq = tl.sum(x * x, axis=0) / num_cols
    normed = (x * tl.rsqrt(mean_sq + eps)).to(x_ptr.dtype.element_ty)
    w = tl.load(w_ptr + cols, mask=mask, other=0.0)
    y = normed.to(tl.float32) * w.to(tl.float32)
    tl.store(out_ptr + row * stride_out_row + cols, y.to(out_ptr.dtype.element_ty), mask=mask)


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    num_cols = x.shape[-1]
    assert weight.shape == (num_cols,), f"weight {tuple(weight.shape)} does not match last dim {num_cols}"
    rows = x.reshape(-1, num_cols)
    if rows.stride(-1) != 1:
        rows = rows.contiguous()
    out = torch.empty((rows.shape[0], num_cols), dtype=x.dtype, device=x.device)
    if rows.shape[0] == 0:
        return out.view(x.shape)
    block = triton.next_power_of_2(num_cols)
    # wider rows need more warps to keep the row in registers without spills
    num_warps = 4 if block <= 2048 else 8
    _rms_norm_kernel[(rows.shape[0],)](rows, weight, out, rows.stride(0), out.stride(0), num_cols, eps,
                                       BLOCK=block, num_warps=num_warps)
    return out.view(x.shape)
