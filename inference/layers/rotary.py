"""Rotary tables for Qwen2-VL.

M-RoPE (LM): each token has 3 positions (t, h, w). The head's rotary pairs are
split in `mrope_section` groups; group i takes its angle from axis i. Text
tokens carry the same position on all axes, so M-RoPE reduces to 1-D RoPE for
them. cos/sin are computed from positions on the fly (no table, no size limit,
static shapes for graph capture).

Vision 2-D RoPE: a patch's (h, w) grid position; the first half of the rotary
pairs take h, the second w.
"""
from __future__ import annotations

import functools

import torch


def inv_freq(dim: int, theta: float, device=None) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, dim, 2, dtype=torch.float32, device=device) / dim))


class MRotaryEmbedding(torch.nn.Module):
    def __init__(self, head_dim: int, theta: float, mrope_section: list[int]):
        super().__init__()
        self.register_buffer("inv_freq", inv_freq(head_dim, theta), persistent=False)
        self.mrope_section = list(mrope_section)

    def forward(self, positions: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """positions [3, T] int -> cos, sin [T, head_dim] fp32."""
        freqs = positions.float()[..., None] * self.inv_freq.float()  # [3, T, D/2]
        parts = freqs.split(self.mrope_section, dim=-1)
        merged = torch.cat([part[i % 3] for i, part in enumerate(parts)], dim=-1)  # [T, D/2]
        emb = torch.cat((merged, merged), dim=-1)
        return emb.cos(), emb.sin()


@functools.lru_cache(maxsize=512)  # distinct grids kept (block crops repeat sizes: 28-px units)
def _grid_tables(t: int, h: int, w: int, head_dim: int, theta: float, merge: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [t*h*w, head_dim] of one grid. Cached per grid: building them is
    ~15 small device ops, and a vision batch of block crops holds dozens of
    images of a few recurring sizes (a layout page is always the same grid).
    The cached tensors are shared: callers must not modify them in place."""
    freq = inv_freq(head_dim // 2, theta, device)
    hpos = torch.arange(h, device=device)[:, None].expand(h, w)
    wpos = torch.arange(w, device=device)[None, :].expand(h, w)
    shape = (h // merge, merge, w // merge, merge)
    hpos = hpos.reshape(shape).transpose(1, 2).flatten()
    wpos = wpos.reshape(shape).transpose(1, 2).flatten()
    pos = torch.stack([hpos, wpos], dim=-1).repeat(t, 1).float()  # [N, 2]
    freqs = torch.cat([pos[:, 0:1] * freq, pos[:, 1:2] * freq], dim=-1)  # [N, head_dim/2]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def vision_rotary(grid_thw: list[tuple[int, int, int]], head_dim: int, theta: float, merge: int, device) -> tuple[torch.Tensor, torch.Tensor]:
    """cos, sin [num_patches, head_dim] fp32 for the patches of all images,
    patches ordered block-major over merge x merge windows (the image
    processor's order)."""
    tables = [_grid_tables(t, h, w, head_dim, theta, merge, torch.device(device)) for t, h, w in grid_thw]
    if len(tables) == 1:
        return tables[0]
    return torch.cat([c for c, _ in tables]), torch.cat([s for _, s in tables])
