"""A Triton GEMM for the vision encoder's fc1, with its bias and quick_gelu in the epilogue.

out = act(x @ weight^T + bias), x [M, K], weight [N, K] (nn.Linear's layout), out [M, N] in
x's dtype. The accumulator is fp32; bias and activation are applied to it and the result is
rounded once (the unfused pair rounds the linear's output to x's dtype before the activation).

Why: fc1's output is the largest activation of a vision block ([patches, 5120]); cuBLAS
writes it, then quick_gelu reads and writes it again: ~54 ms of a 64-page layout pass
(~3 %) at HBM bandwidth. Measured on the H200 (session 12): alone, 1.11x the cuBLAS +
quick_gelu pair at 5 and 11 layout pages (`inference/bench/calls/s12_gemm_probe.py`); in the
layout pass 236 ms against ~191 ms of cuBLAS fc1 plus 54 of quick_gelu (the GEMM itself ~20 %
slower than cuBLAS's, the activation free): kernels -1.9 %.

Kernel: persistent (one program per SM, tiles in GROUP_M-grouped order so programs running
together share weight tiles in L2), 128x256x64 tiles over TMA descriptors, 4 stages, 8 warps;
the epilogue stores two 128x128 halves (the output buffer would not fit beside 4 stages).
Rows past M are TMA's zero fill on load and are clipped on store, so M is free.

Used for bf16/fp16 operands on sm_90 (the tiles need 225 KiB of shared memory: sm_90's
limit; other architectures are unmeasured) with K and N multiples of 64 (every TMA stride and
box aligned), a contiguous bias of N, M >= MIN_ROWS and at least one tile per SM (so the grid
is always the SM count: NUM_PROGS is a compile-time constant); otherwise `linear_act` returns
None and the caller runs cuBLAS + the activation. MIN_ROWS is a guess on the safe side: nothing
below 5 layout pages (27k rows) was measured. DOCPIPE_FUSED_GEMM=0 turns it off (A/B runs).
"""
from __future__ import annotations

import functools

import torch
import triton
import triton.language as tl

from inference.env import env_flag

ENV = "DOCPIPE_FUSED_GEMM"
MIN_ROWS = 4096
_BM, _BN, _BK, _STAGES, _WARPS, _GROUP_M = 128, 256, 64, 4, 8, 8
_QUICK_GELU_LOG2 = tl.constexpr(-1.702 * 1.4426950408889634)  # quick_gelu exponent, base 2
ACTIVATIONS = {None: 0, "quick_gelu": 1}


@triton.jit
def _linear_act_kernel(a_desc, w_desc, c_desc, bias_ptr, M, N, K,
                       BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
                       ACT: tl.constexpr, HAS_BIAS: tl.constexpr, NUM_PROGS: tl.constexpr):
    num_m = tl.cdiv(M, BM)
    num_n = tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    per_group = GROUP_M * num_n
    for tile in tl.range(tl.program_id(0), num_m * num_n, NUM_PROGS, flatten=True):
        first_m = (tile // per_group) * GROUP_M
        size_m = min(num_m - first_m, GROUP_M)
        pid_m = first_m + (tile % per_group) % size_m
        pid_n = (tile % per_group) // size_m
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for kk in range(k_tiles):
            a = a_desc.load([pid_m * BM, kk * BK])
            w = w_desc.load([pid_n * BN, kk * BK])
            acc = tl.dot(a, w.T, acc)
        if HAS_BIAS:
            offs_n = pid_n * BN + tl.arange(0, BN)
            acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
        if ACT == 1:  # quick_gelu: x * sigmoid(1.702 x)
            acc = acc / (1.0 + tl.exp2(_QUICK_GELU_LOG2 * acc))
        halves = tl.permute(tl.reshape(acc, (BM, 2, BN // 2)), (0, 2, 1))
        left, right = tl.split(halves)
        c_desc.store([pid_m * BM, pid_n * BN], left.to(c_desc.dtype))
        c_desc.store([pid_m * BM, pid_n * BN + BN // 2], right.to(c_desc.dtype))


@functools.cache
def _num_sms(index: int) -> int:
    # the SMs this process may use (under MPS its share): a persistent grid wants one program each.
    # Not decode_attention's count, which is the physical one on purpose (its split plan must not
    # depend on the share).
    return torch.cuda.get_device_properties(index).multi_processor_count


def _index(device: torch.device) -> int:
    return device.index if device.index is not None else torch.cuda.current_device()


@functools.cache
def fused_on(index: int) -> bool:
    """DOCPIPE_FUSED_GEMM is on and device `index` is sm_90 (asked once a device)."""
    return env_flag(ENV, default=True) and torch.cuda.get_device_capability(index)[0] == 9


def supported(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> bool:
    """Whether linear_act runs these operands (see the module doc)."""
    if not (x.is_cuda and x.dim() == 2 and x.dtype in (torch.bfloat16, torch.float16)):
        return False
    if weight.dim() != 2 or weight.dtype != x.dtype:
        return False
    (m, k), n = x.shape, weight.shape[0]
    if bias is not None and not (bias.dtype == x.dtype and bias.shape == (n,) and bias.is_contiguous()):
        return False
    if m < MIN_ROWS or k % _BK or n % _BK or weight.shape[1] != k:
        return False
    if not (x.is_contiguous() and weight.is_contiguous()) or (x.data_ptr() | weight.data_ptr()) % 16:
        return False
    index = _index(x.device)
    return fused_on(index) and triton.cdiv(m, _BM) * triton.cdiv(n, _BN) >= _num_sms(index)


def linear_act(x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None,
               act: str | None = None) -> torch.Tensor | None:
    """act(x @ weight^T + bias) in one kernel, or None when `supported` says no."""
    if act not in ACTIVATIONS:
        raise ValueError(f"linear_act: unknown activation {act!r}")
    if not supported(x, weight, bias):
        return None
    from triton.tools.tensor_descriptor import TensorDescriptor

    (m, k), n = x.shape, weight.shape[0]
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    a_desc = TensorDescriptor(x, [m, k], [k, 1], [_BM, _BK])
    w_desc = TensorDescriptor(weight, [n, k], [k, 1], [_BN, _BK])
    c_desc = TensorDescriptor(out, [m, n], [n, 1], [_BM, _BN // 2])
    progs = _num_sms(_index(x.device))  # supported() saw at least as many tiles
    _linear_act_kernel[(progs,)](a_desc, w_desc, c_desc, bias if bias is not None else out, m, n, k,
                                 BM=_BM, BN=_BN, BK=_BK, GROUP_M=_GROUP_M, ACT=ACTIVATIONS[act],
                                 HAS_BIAS=bias is not None, NUM_PROGS=progs,
                                 num_stages=_STAGES, num_warps=_WARPS)
    return out
