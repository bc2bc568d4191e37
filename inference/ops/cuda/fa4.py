"""FlashAttention-4's forward kernel (the `flash-attn-4` package, written in NVIDIA's CuTe DSL) as a
vision-attention candidate, when that package is installed (`pip install 'docpipe[hopper]'`).

Its Hopper kernel is built the way our Triton one cannot be: warp-specialized (a producer warp feeds
two consumer warpgroups through TMA), the consumers take turns on the tensor cores while the other
runs its softmax, and head dim 80 is one 80-wide MMA, not 64 + 16. The vision encoder's choice
(vision_attention.py) times it against the other candidates once per shape and keeps the fastest;
without the package, or on a GPU it has no kernel for, it is simply not a candidate.
The first call compiles the kernel (3.1 s on the H200; once per compile key of the package, not per
shape): at engine start where the engine warms its attention choices (encoder graphs captured at
start), else inside the first generate(). A kernel that fails (to compile or later; running out of
memory aside) takes the package out of the candidates for the rest of the process.
Measured on the H200 (session 13, inference/bench/results/session13): 16 layout pages 4.77 ms, 515
TFLOP/s, against 5.64 ms, 436, for our kernel; 8 % slower again with q and k contiguous copies than as
views of the packed qkv, which is why the encoder rotates them in place. Graph-captured encoder calls
(small batches) still run our tiled Triton kernel: FA4's grid follows the batch, a graph's must not.
"""
from __future__ import annotations

import functools
import logging

import torch

_ARCHES = (9, 10)  # compute capability majors with a forward kernel in the package (Hopper, datacenter Blackwell)


@functools.cache
def _varlen_func():
    """flash_attn.cute's varlen entry, or None (not installed or not importable here)."""
    try:
        from flash_attn.cute import flash_attn_varlen_func
    except Exception as exc:  # ImportError, or a broken install (its compiler libraries missing)
        if not isinstance(exc, ImportError):
            logging.getLogger(__name__).warning("flash-attn-4 is installed but does not import: %s", exc)
        return None
    return flash_attn_varlen_func


_failed: list[str] = []  # the first failure's message: the package is no candidate after it


@functools.cache
def _arch_ok(device_index: int) -> bool:
    return torch.cuda.get_device_capability(device_index)[0] in _ARCHES


def available(q: torch.Tensor) -> bool:
    """Whether the package's kernel takes this vision call: CUDA, bf16/fp16, a GPU it was built for,
    a head dim that is a multiple of 8 up to 256, the package importable and not failed before."""
    return (q.is_cuda and q.dtype in (torch.bfloat16, torch.float16) and q.shape[-1] % 8 == 0
            and q.shape[-1] <= 256 and not _failed and _arch_ok(q.device.index if q.device.index is not None
                                                                 else torch.cuda.current_device())
            and _varlen_func() is not None)


def attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int,
              scale: float) -> torch.Tensor:
    """Bidirectional attention within each image: q, k, v [T, H, D] (last dim contiguous), int32
    cu_seqlens [B+1]; returns [T, H, D]. Raises what the package raises, after marking it failed."""
    try:
        out = _varlen_func()(q, k, v, cu_seqlens_q=cu_seqlens, cu_seqlens_k=cu_seqlens, max_seqlen_q=max_seqlen,
                             max_seqlen_k=max_seqlen, softmax_scale=scale, causal=False)
    except Exception as exc:
        if not _failed and not isinstance(exc, torch.cuda.OutOfMemoryError):  # memory: this call's, not the kernel's
            _failed.append(f"{type(exc).__name__}: {exc}")
            logging.getLogger(__name__).warning("flash-attn-4 failed; not used again in this process: %s", _failed[0])
        raise
    return out[0] if isinstance(out, tuple) else out
