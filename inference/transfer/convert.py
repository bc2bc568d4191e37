"""Convert KV blocks between pools that differ in dtype, block size or heads.

Pool layout (inference/ops/base.py): [blocks, layers, 2, block_size, heads, dim].
The path is token-level: gather the request's tokens out of its source blocks
([layers, 2, tokens, heads, dim]), pick the destination's heads (TP split),
cast, and pack into destination-sized blocks (padding slots are zero). The
result is a contiguous [n_dst_blocks, ...] tensor the transports then move as
ordinary blocks. merge_heads() is the inverse of a TP split, for a receiver
that staged the parts of several senders.
"""
from __future__ import annotations

import math

import torch

from inference.transfer.base import PoolSpec
from inference.h2d import to_device


def gather_tokens(pool: torch.Tensor, block_ids: list[int], num_tokens: int) -> torch.Tensor:
    """Tokens [0, num_tokens) of a sequence: [layers, 2, num_tokens, heads, dim]."""
    block_size = pool.shape[3]
    need = math.ceil(num_tokens / block_size)
    if len(block_ids) < need:
        raise ValueError(f"{num_tokens} tokens need {need} blocks of {block_size}, got {len(block_ids)}")
    idx = to_device(block_ids[:need], pool.device, torch.long)  # pinned: no stream sync
    blocks = pool.index_select(0, idx)  # [n, L, 2, bs, H, D]
    n, layers, _, bs, heads, dim = blocks.shape
    tokens = blocks.permute(1, 2, 0, 3, 4, 5).reshape(layers, 2, n * bs, heads, dim)
    return tokens[:, :, :num_tokens]


def pack_tokens(tokens: torch.Tensor, block_size: int) -> torch.Tensor:
    """[layers, 2, T, heads, dim] -> [ceil(T / block_size), layers, 2, block_size, heads, dim]."""
    layers, _, num_tokens, heads, dim = tokens.shape
    n = math.ceil(num_tokens / block_size)
    padded = tokens.new_zeros((layers, 2, n * block_size, heads, dim))
    padded[:, :, :num_tokens] = tokens
    return padded.reshape(layers, 2, n, block_size, heads, dim).permute(2, 0, 1, 3, 4, 5).contiguous()


def select_heads(tokens: torch.Tensor, head_offset: int, num_heads: int) -> torch.Tensor:
    """Heads [head_offset, head_offset + num_heads) of [..., heads, dim] (TP split)."""
    total = tokens.shape[-2]
    if head_offset < 0 or head_offset + num_heads > total:
        raise ValueError(f"heads [{head_offset}, {head_offset + num_heads}) outside the source's {total} KV heads")
    return tokens[..., head_offset:head_offset + num_heads, :]


def repack(pool: torch.Tensor, src_block_ids: list[int], num_tokens: int, dst: PoolSpec, head_offset: int = 0) -> torch.Tensor:
    """Source blocks of one request -> destination-layout blocks, contiguous."""
    src = PoolSpec.of_pool(pool)
    if (src.num_layers, src.head_dim) != (dst.num_layers, dst.head_dim):
        raise ValueError(f"cannot convert KV of {src.num_layers} layers x dim {src.head_dim} into {dst.num_layers} x {dst.head_dim}")
    if dst.num_kv_heads > src.num_kv_heads:
        raise ValueError(f"destination holds {dst.num_kv_heads} KV heads but this sender has {src.num_kv_heads}: "
                         "merge the parts of several senders with merge_heads() on the receiver")
    tokens = gather_tokens(pool, src_block_ids, num_tokens)
    tokens = select_heads(tokens, head_offset, dst.num_kv_heads).to(dst.torch_dtype)
    return pack_tokens(tokens, dst.block_size)


def split_heads(blocks: torch.Tensor, num_parts: int) -> list[torch.Tensor]:
    """[n, L, 2, bs, H, D] -> num_parts tensors of H / num_parts heads (TP ranks)."""
    heads = blocks.shape[4]
    if heads % num_parts:
        raise ValueError(f"{heads} KV heads do not split into {num_parts} equal parts")
    return [p.contiguous() for p in blocks.split(heads // num_parts, dim=4)]


def merge_heads(parts: list[torch.Tensor]) -> torch.Tensor:
    """Inverse of split_heads: concatenate TP ranks' heads, in rank order."""
    return torch.cat(parts, dim=4)
