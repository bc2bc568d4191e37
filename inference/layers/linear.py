"""Linear layers whose weight packs several checkpoint tensors (q/k/v,
gate/up) so one matmul does the work of several. The loader finds each
checkpoint tensor's slice through `shard_offsets`."""
from __future__ import annotations

import torch
from torch import nn


class PackedLinear(nn.Linear):
    """Output rows = concatenation of named shards, in the given order."""

    def __init__(self, in_features: int, shard_sizes: dict[str, int], bias: bool):
        super().__init__(in_features, sum(shard_sizes.values()), bias=bias)
        self.shard_offsets: dict[str, tuple[int, int]] = {}
        start = 0
        for name, size in shard_sizes.items():
            self.shard_offsets[name] = (start, size)
            start += size

    @torch.no_grad()
    def load_shard(self, param_name: str, shard: str, tensor: torch.Tensor) -> None:
        start, size = self.shard_offsets[shard]
        target = getattr(self, param_name)
        if tensor.shape[0] != size:
            raise ValueError(f"shard {shard} of {param_name}: expected {size} rows, got {tuple(tensor.shape)}")
        target[start : start + size].copy_(tensor)
