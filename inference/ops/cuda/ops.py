"""The CUDA backend's `Ops`: Triton kernels for norms, activation, rotary,
KV store and paged attention; flash attention (torch) for the vision encoder.

Decode-step ops (rms_norm, add_rms_norm, silu_and_mul, rotary, store_kv, decode_attention)
make no host syncs and size everything from tensor shapes, so a decode step
built from them can be captured in a CUDA graph after one warm-up call (Triton
compiles on the first call of each shape class).
"""
from __future__ import annotations

import torch

from inference.ops import base
from inference.ops.cuda.activation import quick_gelu, silu_and_mul
from inference.ops.cuda.add_norm import add_layer_norm, add_rms_norm
from inference.ops.cuda.decode_attention import decode_attention
from inference.ops.cuda.gemm import linear_act
from inference.ops.cuda.kv_store import store_kv
from inference.ops.cuda.norm import rms_norm
from inference.ops.cuda.prefill_attention import prefill_attention, tiles_block_m
from inference.ops.cuda.rotary import rotary
from inference.ops.cuda.vision_attention import graph_config, graph_tiles_block, vision_attention, warm_choices
from inference.ops.cuda.vision_flash import vision_flash_attention


class Ops(base.Ops):
    name = "cuda"
    # Decode-path ops take their launch shapes from tensor shapes only (no host
    # syncs, no data-dependent allocation): decode steps may be graph-captured.
    graph_capturable = True

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        return rms_norm(x, weight, eps)

    def silu_and_mul(self, x: torch.Tensor) -> torch.Tensor:
        return silu_and_mul(x)

    def quick_gelu(self, x: torch.Tensor) -> torch.Tensor:
        return quick_gelu(x)

    def linear_quick_gelu(self, x, weight, bias):
        out = linear_act(x, weight, bias, "quick_gelu")
        return out if out is not None else super().linear_quick_gelu(x, weight, bias)

    def add_layer_norm(self, x, residual, weight, bias, eps):
        return add_layer_norm(x, residual, weight, bias, eps)

    def add_rms_norm(self, x, residual, weight, eps):
        return add_rms_norm(x, residual, weight, eps)

    def rotary(self, q, k, cos, sin):
        return rotary(q, k, cos, sin)

    def rotary_(self, q, k, cos, sin) -> None:
        rotary(q, k, cos, sin, inplace=True)

    def store_kv(self, k, v, k_cache, v_cache, slot_mapping) -> None:
        store_kv(k, v, k_cache, v_cache, slot_mapping)

    def prefill_attention(self, q, k_cache, v_cache, cu_seqlens_q, seq_lens_k, block_tables, scale,
                          max_seqlen_q, max_seqlen_k, tiles=None):
        return prefill_attention(q, k_cache, v_cache, cu_seqlens_q, seq_lens_k, block_tables, scale,
                                 max_seqlen_q, max_seqlen_k, tiles=tiles)

    def prefill_tiles_block(self, dtype: torch.dtype) -> int:
        return tiles_block_m(dtype)

    def decode_attention(self, q, k_cache, v_cache, block_tables, seq_lens, scale):
        return decode_attention(q, k_cache, v_cache, block_tables, seq_lens, scale)

    def vision_attention(self, q, k, v, cu_seqlens, max_seqlen, scale, tiles=None):
        if tiles is not None:  # a graph-captured encoder call: the Triton kernel over a tile list
            return vision_flash_attention(q, k, v, cu_seqlens, max_seqlen, scale, graph_config(), tiles)
        return vision_attention(q, k, v, cu_seqlens, max_seqlen, scale)

    def warm_vision_attention(self, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                              graph_patches: int) -> None:
        warm_choices(heads, head_dim, dtype, device, graph_patches)

    def vision_tiles_block(self, head_dim: int, dtype: torch.dtype) -> int | None:
        """Query rows per entry of vision_attention's `tiles`, or None: no tiled kernel here."""
        return graph_tiles_block(head_dim, dtype)
