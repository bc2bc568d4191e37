"""Qwen2-VL vision encoder: patch embed -> blocks of bidirectional attention
within each image (2-D RoPE) -> patch merger (2x2 patches -> one LM token).

Input is what Qwen2VLImageProcessor returns: pixel_values [num_patches,
C * temporal_patch * patch * patch] for all images concatenated, and their
grids (t, h, w) in patches. Output: [num_patches / merge^2, LM hidden].
Many images (of many requests) run in one call; attention stays per image via
cu_seqlens.
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from inference.layers.rotary import vision_rotary
from inference.models.model_config import VisionConfig
from inference.ops.base import Ops
from inference.h2d import to_device


def _act(name: str, x: torch.Tensor) -> torch.Tensor:
    """The vision MLP's activation other than quick_gelu (which Ops.linear_quick_gelu fuses with fc1)."""
    if name in ("gelu", "gelu_pytorch_tanh"):
        return F.gelu(x, approximate="tanh" if name.endswith("tanh") else "none")
    raise ValueError(f"unsupported vision activation {name!r}")


class PatchEmbed(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.embed_dim = cfg.embed_dim
        # Same parameter as the checkpoint's Conv3d; stride == kernel, so the
        # conv is one matmul over flattened patches.
        self.proj = nn.Conv3d(cfg.in_channels, cfg.embed_dim,
                              kernel_size=(cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size),
                              stride=(cfg.temporal_patch_size, cfg.patch_size, cfg.patch_size), bias=False)

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        weight = self.proj.weight.view(self.embed_dim, -1)
        return F.linear(pixels.to(weight.dtype), weight)


class VisionBlock(nn.Module):
    def __init__(self, cfg: VisionConfig, ops: Ops):
        super().__init__()
        self.cfg, self.ops = cfg, ops
        dim, hidden = cfg.embed_dim, int(cfg.embed_dim * cfg.mlp_ratio)
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = nn.Module()
        self.attn.qkv = nn.Linear(dim, 3 * dim, bias=True)
        self.attn.proj = nn.Linear(dim, dim, bias=True)
        self.mlp = nn.Module()
        self.mlp.fc1 = nn.Linear(dim, hidden)
        self.mlp.fc2 = nn.Linear(hidden, dim)

    def forward(self, x, normed, cu_seqlens, max_seqlen, cos, sin, next_norm: nn.LayerNorm, tiles=None):
        """x: the residual stream; normed: norm1(x), computed by whoever last added to x.
        Returns (new x, next_norm(new x)): each residual add is fused with the LayerNorm after it.
        tiles: the attention's tile list (graph-shaped calls, Ops.vision_attention)."""
        num_tokens, heads, head_dim = x.shape[0], self.cfg.num_heads, self.cfg.head_dim
        qkv = self.attn.qkv(normed).view(num_tokens, 3, heads, head_dim)
        q, k, v = qkv.unbind(1)
        self.ops.rotary_(q, k, cos, sin)  # q, k stay views of qkv: FA4 reads them faster so (session 13)
        attn = self.ops.vision_attention(q, k, v, cu_seqlens, max_seqlen, head_dim ** -0.5, tiles=tiles)
        x, normed = self.ops.add_layer_norm(x, self.attn.proj(attn.reshape(num_tokens, -1)),
                                            self.norm2.weight, self.norm2.bias, self.norm2.eps)
        fc1 = self.mlp.fc1
        if self.cfg.hidden_act == "quick_gelu":  # one pass where the backend fuses them
            hidden = self.ops.linear_quick_gelu(normed, fc1.weight, fc1.bias)
        else:
            hidden = _act(self.cfg.hidden_act, fc1(normed))
        mlp = self.mlp.fc2(hidden)
        return self.ops.add_layer_norm(x, mlp, next_norm.weight, next_norm.bias, next_norm.eps)


class PatchMerger(nn.Module):
    def __init__(self, cfg: VisionConfig):
        super().__init__()
        self.merged_dim = cfg.embed_dim * cfg.spatial_merge_size ** 2
        self.ln_q = nn.LayerNorm(cfg.embed_dim, eps=1e-6)
        self.mlp = nn.Sequential(nn.Linear(self.merged_dim, self.merged_dim), nn.GELU(),
                                 nn.Linear(self.merged_dim, cfg.hidden_size))

    def forward(self, normed: torch.Tensor) -> torch.Tensor:
        """normed: ln_q of the last block's output (fused into that block's last residual add)."""
        return self.mlp(normed.view(-1, self.merged_dim))


class VisionTransformer(nn.Module):
    def __init__(self, cfg: VisionConfig, ops: Ops):
        super().__init__()
        self.cfg = cfg
        self.patch_embed = PatchEmbed(cfg)
        self.blocks = nn.ModuleList(VisionBlock(cfg, ops) for _ in range(cfg.depth))
        self.merger = PatchMerger(cfg)

    def forward(self, pixel_values: torch.Tensor, grid_thw: list[tuple[int, int, int]]) -> torch.Tensor:
        device = pixel_values.device
        sizes = [t * h * w for t, h, w in grid_thw]
        cu_seqlens = to_device(torch.tensor([0] + sizes).cumsum(0), device, torch.int32)
        cos, sin = self.rotary(grid_thw, device)
        return self.run(pixel_values, cu_seqlens, max(sizes), cos, sin)

    def rotary(self, grid_thw: list[tuple[int, int, int]], device) -> tuple[torch.Tensor, torch.Tensor]:
        return vision_rotary(grid_thw, self.cfg.head_dim, self.cfg.rope_theta, self.cfg.spatial_merge_size, device)

    def run(self, pixel_values: torch.Tensor, cu_seqlens: torch.Tensor, max_seqlen: int, cos: torch.Tensor,
            sin: torch.Tensor, tiles: torch.Tensor | None = None) -> torch.Tensor:
        """The encoder on device inputs alone (no host data read, so it can be captured): patches
        [N, C*T*P*P], int32 image bounds, the longest image, rotary tables [N, head_dim]; with
        `tiles`, rows past cu_seqlens[-1] are padding (their outputs are garbage, and row-wise)."""
        x = self.patch_embed(pixel_values)
        normed = self.blocks[0].norm1(x) if len(self.blocks) else self.merger.ln_q(x)
        for i, block in enumerate(self.blocks):
            next_norm = self.blocks[i + 1].norm1 if i + 1 < len(self.blocks) else self.merger.ln_q
            x, normed = block(x, normed, cu_seqlens, max_seqlen, cos, sin, next_norm, tiles)
        return self.merger(normed)
