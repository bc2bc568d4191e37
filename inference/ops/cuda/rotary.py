"""Rotate-half rotary embedding of q and k in one Triton launch.

One program per token rotates all of that token's query and key heads, so cos
and sin are read once per token. q and k may be strided views (the split of a
fused qkv projection); the last dim must be contiguous. The results are new
contiguous tensors (or, in place, q and k themselves: the vision encoder keeps them as views of its
qkv, which the attention reads as they are): out = x * cos + rotate_half(x) * sin, in fp32, rounded once.
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(x_ptr, out_ptr, token, stride_xt, stride_xh, stride_ot, stride_oh, num_heads,
                  cos1, cos2, sin1, sin2, offs_d, mask_d,
                  HALF: tl.constexpr, HEADS_PAD: tl.constexpr):
    offs_h = tl.arange(0, HEADS_PAD)
    mask = (offs_h[:, None] < num_heads) & mask_d[None, :]
    src = x_ptr + token * stride_xt + offs_h[:, None] * stride_xh + offs_d[None, :]
    x1 = tl.load(src, mask=mask, other=0.0).to(tl.float32)
    x2 = tl.load(src + HALF, mask=mask, other=0.0).to(tl.float32)
    # rotate_half(x) = cat(-x2, x1)
    y1 = x1 * cos1[None, :] - x2 * sin1[None, :]
    y2 = x2 * cos2[None, :] + x1 * sin2[None, :]
    dst = out_ptr + token * stride_ot + offs_h[:, None] * stride_oh + offs_d[None, :]
    tl.store(dst, y1.to(out_ptr.dtype.element_ty), mask=mask)
    tl.store(dst + HALF, y2.to(out_ptr.dtype.element_ty), mask=mask)


@triton.jit
def _rotary_kernel(q_ptr, k_ptr, cos_ptr, sin_ptr, q_out_ptr, k_out_ptr,
                   stride_qt, stride_qh, stride_kt, stride_kh, stride_ct, stride_st,
                   stride_qot, stride_qoh, stride_kot, stride_koh, num_q_heads, num_k_heads,
                   HALF: tl.constexpr, HALF_PAD: tl.constexpr, QH_PAD: tl.constexpr, KH_PAD: tl.constexpr):
    token = tl.program_id(0).to(tl.int64)
    offs_d = tl.arange(0, HALF_PAD)
    mask_d = offs_d < HALF
    cos1 = tl.load(cos_ptr + token * stride_ct + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    cos2 = tl.load(cos_ptr + token * stride_ct + HALF + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    sin1 = tl.load(sin_ptr + token * stride_st + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    sin2 = tl.load(sin_ptr + token * stride_st + HALF + offs_d, mask=mask_d, other=0.0).to(tl.float32)
    _rotate_heads(q_ptr, q_out_ptr, token, stride_qt, stride_qh, stride_qot, stride_qoh, num_q_heads,
                  cos1, cos2, sin1, sin2, offs_d, mask_d, HALF, QH_PAD)
    _rotate_heads(k_ptr, k_out_ptr, token, stride_kt, stride_kh, stride_kot, stride_koh, num_k_heads,
                  cos1, cos2, sin1, sin2, offs_d, mask_d, HALF, KH_PAD)


def _last_dim_contiguous(x: torch.Tensor) -> torch.Tensor:
    return x if x.stride(-1) == 1 else x.contiguous()


def rotary(q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor,
           inplace: bool = False) -> tuple[torch.Tensor, torch.Tensor]:
    """inplace: the rotated values go back into q and k (each program reads its token's heads before
    writing them), which must then have a contiguous last dim; q and k are returned."""
    num_tokens, num_q_heads, head_dim = q.shape
    num_k_heads = k.shape[1]
    assert head_dim % 2 == 0 and k.shape == (num_tokens, num_k_heads, head_dim), "q/k shapes disagree"
    assert cos.shape == (num_tokens, head_dim) and sin.shape == cos.shape, "cos/sin must be [T, head_dim]"
    if inplace:
        if q.stride(-1) != 1 or k.stride(-1) != 1:
            raise ValueError("rotary in place: q and k need a contiguous last dim")
        q_out, k_out = q, k
    else:
        q, k = _last_dim_contiguous(q), _last_dim_contiguous(k)
        q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
        k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    cos, sin = _last_dim_contiguous(cos), _last_dim_contiguous(sin)
    if num_tokens == 0:
        return q_out, k_out
    half = head_dim // 2
    _rotary_kernel[(num_tokens,)](
        q, k, cos, sin, q_out, k_out,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), cos.stride(0), sin.stride(0),
        q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1), num_q_heads, num_k_heads,
        HALF=half, HALF_PAD=triton.next_power_of_2(half),
        QH_PAD=triton.next_power_of_2(num_q_heads), KH_PAD=triton.next_power_of_2(num_k_heads))
    return q_out, k_out
