"""Paged causal attention of the LM: store this step's K/V in the pool, then
attend over each sequence's cached context.

`AttentionMetadata` is built once per step by the model runner and shared by
all layers; `is_decode` (one new token per sequence, no prefill in the batch)
selects the decode kernel, whose inputs have static shapes for graph capture.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from inference.ops.base import Ops


@dataclass
class AttentionMetadata:
    is_decode: bool                 # every sequence adds exactly one token
    slot_mapping: torch.Tensor      # [T] int64 pool slot per new token, -1 = padding
    block_tables: torch.Tensor      # [B, max_blocks] int32
    seq_lens_k: torch.Tensor        # [B] int32 context length incl. new tokens
    cu_seqlens_q: torch.Tensor | None = None  # [B + 1] int32 (prefill only)
    max_seqlen_q: int = 1           # longest new-token run in the batch
    max_seqlen_k: int = 0           # longest context in the batch
    tiles: torch.Tensor | None = None  # prefill: int32 (sequence, query tile) list (graph-shaped calls)


class PagedAttention(nn.Module):
    def __init__(self, num_heads: int, num_kv_heads: int, head_dim: int, ops: Ops):
        super().__init__()
        self.num_heads, self.num_kv_heads, self.head_dim = num_heads, num_kv_heads, head_dim
        self.scale = head_dim ** -0.5
        self.ops = ops
        # Set by the model runner once the pool exists: views into kv_pool.
        self.k_cache: torch.Tensor | None = None
        self.v_cache: torch.Tensor | None = None

    def forward(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        self.ops.store_kv(k, v, self.k_cache, self.v_cache, meta.slot_mapping)
        if meta.is_decode:
            return self.ops.decode_attention(q, self.k_cache, self.v_cache, meta.block_tables, meta.seq_lens_k, self.scale)
        return self.ops.prefill_attention(
            q, self.k_cache, self.v_cache, meta.cu_seqlens_q, meta.seq_lens_k, meta.block_tables,
            self.scale, meta.max_seqlen_q, meta.max_seqlen_k, tiles=meta.tiles,
        )
