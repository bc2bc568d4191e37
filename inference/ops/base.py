"""The device op interface. Layers call these; backends implement them.

A backend is a folder under inference/ops/ (reference/, cuda/, ...) exposing
an `Ops` subclass; `inference.ops.get_ops(device)` picks one per worker.

Tensor conventions (T = tokens in the flattened batch, B = sequences):
- q: [T, num_heads, head_dim]; k, v: [T, num_kv_heads, head_dim]
- KV pool of one worker: kv_pool[num_blocks, num_layers, 2, block_size,
  num_kv_heads, head_dim]. One block of all layers is one contiguous region,
  so KV transfer moves runs of consecutive blocks as single copies. A layer's
  caches are the strided views kv_pool[:, layer, 0] (K) and kv_pool[:, layer, 1] (V),
  each [num_blocks, block_size, num_kv_heads, head_dim].
- slot_mapping[T]: int64 slot = block_id * block_size + offset; -1 = skip.
- block_tables[B, max_blocks_per_seq]: int32 block ids, padded with 0.
- cu_seqlens_*: int32 [B + 1] prefix sums.
"""
from __future__ import annotations

import torch


class Ops:
    name = "base"
    # True when decode_attention, store_kv, rotary, rms_norm and silu_and_mul
    # are safe inside CUDA graph capture (no host syncs, no shape-dependent
    # host logic); the model runner captures decode steps only then.
    graph_capturable = False

    def rms_norm(self, x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
        """RMSNorm over the last dim, computed in fp32, returned in x.dtype."""
        raise NotImplementedError

    def silu_and_mul(self, x: torch.Tensor) -> torch.Tensor:
        """x[..., 2*I] -> silu(x[..., :I]) * x[..., I:]."""
        raise NotImplementedError

    def quick_gelu(self, x: torch.Tensor) -> torch.Tensor:
        """x * sigmoid(1.702 x) (the vision MLP's activation), in x.dtype.
        Generic torch version; backends may fuse it into one pass."""
        return x * torch.sigmoid(1.702 * x)

    def linear_quick_gelu(self, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
        """quick_gelu(x @ weight^T + bias) (the vision MLP's fc1 and activation). Generic version
        from F.linear and this backend's quick_gelu; backends may fuse the two."""
        return self.quick_gelu(torch.nn.functional.linear(x, weight, bias))

    def add_layer_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor,
                       eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, LayerNorm(s)) with s = x + residual rounded to x.dtype (the residual
        stream's next value and its normalised copy). Generic torch version;
        backends may fuse it into one pass."""
        total = x + residual
        return total, torch.nn.functional.layer_norm(total, (x.shape[-1],), weight, bias, eps)

    def add_rms_norm(self, x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor,
                     eps: float) -> tuple[torch.Tensor, torch.Tensor]:
        """(s, rms_norm(s)) with s = x + residual rounded to x.dtype. Generic
        version from this backend's rms_norm; backends may fuse it."""
        total = x + residual
        return total, self.rms_norm(total, weight, eps)

    def rotary(self, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Rotate-half rotary embedding. cos, sin: [T, head_dim] (M-RoPE
        sections already merged by the caller)."""
        raise NotImplementedError

    def rotary_(self, q: torch.Tensor, k: torch.Tensor, cos: torch.Tensor, sin: torch.Tensor) -> None:
        """rotary() in place: q and k (views of a packed qkv, say) get their rotated values."""
        rotated_q, rotated_k = self.rotary(q, k, cos, sin)
        q.copy_(rotated_q)
        k.copy_(rotated_k)

    def store_kv(self, k: torch.Tensor, v: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, slot_mapping: torch.Tensor) -> None:
        """Write k, v [T, Hk, D] into the paged caches at slot_mapping."""
        raise NotImplementedError

    def prefill_attention(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        cu_seqlens_q: torch.Tensor,
        seq_lens_k: torch.Tensor,
        block_tables: torch.Tensor,
        scale: float,
        max_seqlen_q: int,
        max_seqlen_k: int,
        tiles: torch.Tensor | None = None,
    ) -> torch.Tensor:
        """Causal attention of new tokens q [T, H, D] over each sequence's
        whole context in the cache (cached prefix + the new tokens, already
        stored). Query i of sequence s sits at position seq_lens_k[s] -
        len_q(s) + i. Returns [T, H, D].
        tiles (int32, see vision_flash.flash_tiles, prefill_tiles_block
        query rows a tile): the launch is sized by it alone (graph capture);
        rows of T past cu_seqlens_q[-1] are left unset.
        """
        raise NotImplementedError

    def decode_attention(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        block_tables: torch.Tensor,
        seq_lens: torch.Tensor,
        scale: float,
    ) -> torch.Tensor:
        """One query per sequence, q [B, H, D], over seq_lens[b] cached tokens
        (the current token's K/V already stored). Returns [B, H, D]."""
        raise NotImplementedError

    def vision_attention(self, q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                         max_seqlen: int, scale: float, tiles: torch.Tensor | None = None) -> torch.Tensor:
        """Bidirectional attention within each image: q, k, v [T, H, D],
        images delimited by cu_seqlens. Returns [T, H, D]. tiles (int32, see
        vision_flash.flash_tiles, with vision_tiles_block rows a tile): the
        launch is sized by it alone (graph capture); rows of T past the
        images are left unset."""
        raise NotImplementedError

    def warm_vision_attention(self, heads: int, head_dim: int, dtype: torch.dtype, device: torch.device,
                              graph_patches: int) -> None:
        """Engine start: whatever vision_attention decides or builds on a batch's first call of a
        kind (kernel choice, kernel builds), done now rather than inside a run; graph_patches: the
        most patches an encoder graph takes (larger calls are eager). Nothing here."""

    def prefill_tiles_block(self, dtype: torch.dtype) -> int | None:
        """Query rows per `tiles` entry of prefill_attention, or None: this backend has no tiled launch."""
        return None

    def vision_tiles_block(self, head_dim: int, dtype: torch.dtype) -> int | None:
        """Query rows per `tiles` entry of vision_attention, or None: this backend has no tiled launch."""
        return None
