"""Bidirectional attention within each image of a packed vision batch.

Paths, same result (up to rounding):
- torch's flash-attention varlen entry (torch.nn.attention.varlen.varlen_attn)
  when this torch has it with a `scale` argument and the dtype is bf16/fp16:
  one launch for the whole packed batch, no host sync;
- our Triton kernel (vision_flash.py), which splits head dim 80 into 64 + 16
  instead of padding it (cuDNN's and flash's head-dim-80 kernels run 128-wide
  tiles: 37% of their tensor-core work is padding);
- FlashAttention-4's kernel (fa4.py) where the optional flash-attn-4 package
  is installed and has a kernel for the GPU (Hopper, datacenter Blackwell).
When every image of the batch has the same length (layout pages: T ==
num_images * max_seqlen, known without a sync) the batch is also a plain
[B, H, N, D] SDPA problem, which cuDNN's fused attention may run faster than
flash varlen at head dim 80. For images of at least CUDNN_MIN_LENGTH
patches the first call per (power-of-two length bucket, heads, dim, dtype)
times the candidates once (events, a few calls each) and keeps the fastest;
other batches (block crops: many lengths) choose between varlen and Triton
once per power-of-two bucket of max_seqlen. A candidate that errors is dropped.
Triton runs in two launch configs, each a candidate of its own.
DOCPIPE_VISION_ATTN=cudnn|varlen|triton|fa4 forces one (A/B runs, debugging),
=no-triton leaves the Triton kernel out;
a forced candidate that does not apply falls back to the automatic choice.
Without varlen (fp32, the CPU, older torch): SDPA per image (one host sync to
read cu_seqlens; graph-captured encoder calls take the tiled Triton kernel
instead, see graph_tiles_block), images of equal length batched into one SDPA call.
"""
from __future__ import annotations

import functools
import inspect
import logging
import os

import torch
import torch.nn.functional as F

from inference.ops.cuda import fa4
from inference.ops.cuda.flash_config import FlashConfig
from inference.ops.shape_groups import pow2_parts
from inference.ops.timing import event_ms
from inference.h2d import to_device

try:  # present in torch >= 2.9, its signature has moved between releases
    from torch.nn.attention.varlen import varlen_attn as _varlen_attn
    _VARLEN_HAS_SCALE = "scale" in inspect.signature(_varlen_attn).parameters
except ImportError:
    _varlen_attn, _VARLEN_HAS_SCALE = None, False


def varlen_available(q: torch.Tensor) -> bool:
    return (_varlen_attn is not None and _VARLEN_HAS_SCALE and q.is_cuda
            and q.dtype in (torch.bfloat16, torch.float16))


CUDNN_MIN_LENGTH = 4096  # patches per image; a 1036x1036 layout page has 5476
_CHOICE: dict[tuple, str] = {}  # (kind, length bucket, heads, dim, dtype) -> "cudnn" | "varlen" | "triton"
_FORCED = os.environ.get("DOCPIPE_VISION_ATTN", "auto").strip().lower() or "auto"
if _FORCED not in ("auto", "cudnn", "varlen", "triton", "fa4", "no-triton"):
    raise ValueError(f"DOCPIPE_VISION_ATTN={_FORCED!r}: expected auto, cudnn, varlen, triton, fa4 or no-triton")


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
    try:
        fn()
    except Exception as e:  # no kernel for this shape / build, or a compile failure: not a candidate
        logging.getLogger(__name__).warning("vision attention candidate failed, not used: %s", e)
        return float("inf")
    return event_ms(fn, reps)


GRAPH_CONFIG_ENV = "DOCPIPE_VISION_GRAPH_CONFIG"


@functools.cache
def graph_config():
    """The launch config of graph-captured encoder calls (tiled grid, no timing inside a capture):
    the fastest tile-list launch of the session-8 sweep (inference/bench/attn_vision.py, `tiled_*`
    rows) at 16 layout pages (418.8 TFLOP/s; at 4 pages four configs within 0.2 %), and the best
    layout-stage prefill of inference.bench.layout_ab there. DOCPIPE_VISION_GRAPH_CONFIG=<name>
    (e.g. m128n64w8s3tma) runs another one (A/B runs)."""
    name = os.environ.get(GRAPH_CONFIG_ENV, "").strip()
    return FlashConfig.parse(name) if name else FlashConfig(128, 64, 4, 3, tma=True)


_GRAPH_DTYPES = (torch.bfloat16, torch.float16, torch.float32)


def graph_tiles_block(head_dim: int, dtype: torch.dtype) -> int | None:
    """Query rows per `tiles` entry of a graph-captured encoder call (graph_config's kernel), or
    None: that kernel does not take this head dim or dtype, or DOCPIPE_VISION_ATTN picked another
    kernel (graphs would bypass it). Read here so the check follows _FORCED as this module has it."""
    if _FORCED not in ("auto", "triton"):
        return None
    return graph_config().block_m if dtype in _GRAPH_DTYPES and _triton_head_dim(head_dim) else None


@functools.cache  # read on every encoder layer's call: built once, never modified
def _triton_configs() -> dict:
    """Launch configs tried at run time (the fastest per length bucket is kept): the
    sweep's best on the H200 differed by batch (inference/bench/attn_vision.py)."""
    configs = dict.fromkeys([graph_config(), FlashConfig(128, 64, 8, 3, tma=True, maxnreg=128)])  # no config twice
    return {"triton" if i == 0 else f"triton:{c.name}": c for i, c in enumerate(configs)}


def reset_config_caches() -> None:
    """Read DOCPIPE_VISION_GRAPH_CONFIG again (tests): both cached config reads."""
    graph_config.cache_clear()
    _triton_configs.cache_clear()


def _triton(q, k, v, cu, max_seqlen: int, scale: float, config=None) -> torch.Tensor:
    from inference.ops.cuda.vision_flash import vision_flash_attention
    return vision_flash_attention(q, k, v, cu, max_seqlen, scale, config)


@functools.cache
def _triton_head_dim(head_dim: int) -> bool:
    from inference.ops.cuda.vision_flash import split_head_dim
    try:
        split_head_dim(head_dim)
        return True
    except ValueError:
        return False


def _choose(key: tuple, candidates: dict) -> str:
    """The fastest candidate for this key (timed once), or the forced one. Timed again when the kept one
    is no candidate any more (FA4 after its package failed on another key)."""
    if _FORCED in candidates:
        return _FORCED
    if _CHOICE.get(key) not in candidates:
        times = {name: _time_ms(fn) for name, fn in candidates.items()}
        if all(t == float("inf") for t in times.values()):
            raise RuntimeError(f"vision attention: every candidate failed for {key}: {sorted(times)}")
        _CHOICE[key] = min(times, key=times.get)
        logging.getLogger(__name__).info("vision attention %s: %s (ms: %s)", key, _CHOICE[key],
                                         {n: round(t, 3) for n, t in times.items()})
    return _CHOICE[key]


def vision_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                     max_seqlen: int, scale: float, use_varlen: bool = True) -> torch.Tensor:
    assert q.shape == k.shape == v.shape, "vision q, k, v must share [T, H, D]"
    if use_varlen and varlen_available(q):
        cu = cu_seqlens.to(torch.int32)
        candidates = {"varlen": lambda: _varlen_attn(q, k, v, cu, cu, max_seqlen, max_seqlen, scale=scale)}
        if _triton_head_dim(q.shape[2]) and _FORCED != "no-triton":
            for name, config in _triton_configs().items():
                candidates[name] = lambda config=config: _triton(q, k, v, cu, max_seqlen, scale, config)
        if fa4.available(q):
            candidates["fa4"] = lambda: fa4.attention(q, k, v, cu, max_seqlen, scale)
        num_images = cu_seqlens.numel() - 1
        bucket = 1 << max(max_seqlen - 1, 0).bit_length()
        uniform = q.shape[0] == num_images * max_seqlen
        if uniform and max_seqlen >= CUDNN_MIN_LENGTH:
            candidates["cudnn"] = lambda: uniform_cudnn(q, k, v, num_images, scale)
        # one timing per (bucket, shape): block crops come in many lengths, and each new cuDNN
        # shape also costs a plan build, so cuDNN is only tried on long uniform images (pages)
        key = (uniform and max_seqlen >= CUDNN_MIN_LENGTH, bucket, q.shape[1], q.shape[2], q.dtype)
        while True:
            name = _choose(key, candidates)
            try:
                return candidates[name]()
            except Exception as exc:
                # the chosen kernel failing later (no cuDNN plan for a new image count in this bucket; FA4
                # raising whatever its package raises) is dropped and the choice made again; other errors of
                # our own kernels are bugs, not choices
                if (name != "fa4" and not isinstance(exc, RuntimeError)) or _FORCED in candidates or len(candidates) == 1:
                    raise
                logging.getLogger(__name__).warning("vision attention %s failed on %s, choosing again: %s",
                                                    name, key, exc)
                candidates.pop(name, None)
                _CHOICE.pop(key, None)
    return _per_length_sdpa(q, k, v, cu_seqlens, scale)


PAGE_PATCHES = 5476  # a 1036x1036 layout page (74x74 patches), what a document run sends most


GRAPH_PATCHES = 32768  # the largest encoder graph's patches (vision_graph.MAX_PATCHES), unless told


def eager_pages(graph_patches: int = GRAPH_PATCHES) -> int:
    """The fewest layout pages an encoder graph of graph_patches does not take (they run eagerly)."""
    return graph_patches // PAGE_PATCHES + 1


def warm_choices(heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                 graph_patches: int = GRAPH_PATCHES) -> None:
    """Engine start: the choices (candidates timed, kernels built) for eager calls of layout pages,
    alone and mixed with a crop, made now, on the smallest such call (the choice is kept per length
    bucket, whatever the page count). Made inside a run, the first one took seconds on a machine whose
    Triton cache lacked a candidate (session 8: a PD prefill worker's first batch of 16 pages, TTFT
    4.5 s). q, k and v are views of one packed qkv, as the encoder hands them over (rotary in place).
    graph_patches: the largest encoder graph's patches (the caller's graphs), what decides that size."""
    gen = torch.Generator(device=device).manual_seed(0)
    pages = eager_pages(graph_patches)
    for lengths in ([PAGE_PATCHES] * pages, [PAGE_PATCHES] * pages + [1024]):
        qkv = torch.randn(sum(lengths), 3, heads, head_dim, device=device, generator=gen).to(dtype)
        cu = torch.tensor([0, *lengths], device=device, dtype=torch.int32).cumsum(0, dtype=torch.int32)
        q, k, v = qkv.unbind(1)
        vision_attention(q, k, v, cu, max(lengths), head_dim ** -0.5)
        del qkv, q, k, v
    torch.cuda.synchronize(device)


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
