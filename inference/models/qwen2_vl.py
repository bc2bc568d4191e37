"""Qwen2-VL for the engine: flattened-batch LM over the paged KV pool, plus
the vision encoder. Parameter names follow the checkpoint after the loader's
mapping (`language_model.*`, `visual.*`, `lm_head.*`), with q/k/v and
gate/up packed into one matmul each.

forward(input_embeds [T, hidden], positions [3, T], meta) -> hidden [T, hidden];
the runner picks the rows it needs and calls compute_logits on them only.
"""
from __future__ import annotations

import torch
from torch import nn

from inference.layers.attention import AttentionMetadata, PagedAttention
from inference.layers.linear import PackedLinear
from inference.layers.norm import RMSNorm
from inference.layers.rotary import MRotaryEmbedding
from inference.models.model_config import ModelConfig
from inference.models.vision import VisionTransformer
from inference.ops.base import Ops


class SelfAttention(nn.Module):
    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.ops = ops
        self.num_heads, self.num_kv_heads, self.head_dim = cfg.num_attention_heads, cfg.num_key_value_heads, cfg.head_dim
        q_size, kv_size = self.num_heads * self.head_dim, self.num_kv_heads * self.head_dim
        self.qkv_proj = PackedLinear(cfg.hidden_size, {"q": q_size, "k": kv_size, "v": kv_size}, bias=True)
        self.o_proj = nn.Linear(q_size, cfg.hidden_size, bias=False)
        self.attn = PagedAttention(self.num_heads, self.num_kv_heads, self.head_dim, ops)
        self.split_sizes = [q_size, kv_size, kv_size]

    def forward(self, x, cos, sin, meta: AttentionMetadata):
        q, k, v = self.qkv_proj(x).split(self.split_sizes, dim=-1)
        q = q.view(-1, self.num_heads, self.head_dim)
        k = k.view(-1, self.num_kv_heads, self.head_dim)
        v = v.view(-1, self.num_kv_heads, self.head_dim)
        q, k = self.ops.rotary(q, k, cos, sin)
        out = self.attn(q, k, v, meta)
        return self.o_proj(out.reshape(out.shape[0], -1))


class MLP(nn.Module):
    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.ops = ops
        size = cfg.intermediate_size
        self.gate_up_proj = PackedLinear(cfg.hidden_size, {"gate": size, "up": size}, bias=False)
        self.down_proj = nn.Linear(size, cfg.hidden_size, bias=False)

    def forward(self, x):
        return self.down_proj(self.ops.silu_and_mul(self.gate_up_proj(x)))


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.self_attn = SelfAttention(cfg, ops)
        self.mlp = MLP(cfg, ops)
        self.input_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ops)
        self.post_attention_layernorm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ops)

    def forward(self, x, normed, cos, sin, meta, next_norm: RMSNorm):
        """x: the residual stream; normed: input_layernorm(x), computed by whoever last added to x.
        Returns (new x, next_norm(new x)): each residual add is fused with the norm after it."""
        ops = self.mlp.ops
        post = self.post_attention_layernorm
        x, normed = ops.add_rms_norm(x, self.self_attn(normed, cos, sin, meta), post.weight, post.eps)
        return ops.add_rms_norm(x, self.mlp(normed), next_norm.weight, next_norm.eps)


class TextModel(nn.Module):
    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.embed_tokens = nn.Embedding(cfg.vocab_size, cfg.hidden_size)
        self.layers = nn.ModuleList(DecoderLayer(cfg, ops) for _ in range(cfg.num_hidden_layers))
        self.norm = RMSNorm(cfg.hidden_size, cfg.rms_norm_eps, ops)
        self.rotary = MRotaryEmbedding(cfg.head_dim, cfg.rope_theta, cfg.mrope_section)

    def forward(self, embeds, positions, meta):
        cos, sin = self.rotary(positions)
        x = embeds
        normed = self.layers[0].input_layernorm(x) if len(self.layers) else self.norm(x)
        for i, layer in enumerate(self.layers):
            next_norm = self.layers[i + 1].input_layernorm if i + 1 < len(self.layers) else self.norm
            x, normed = layer(x, normed, cos, sin, meta, next_norm)
        return normed


class Qwen2VLForConditionalGeneration(nn.Module):
    # checkpoint sub-name -> (packed module, shard), for the loader
    packed_modules = {"q_proj": ("qkv_proj", "q"), "k_proj": ("qkv_proj", "k"), "v_proj": ("qkv_proj", "v"),
                      "gate_proj": ("gate_up_proj", "gate"), "up_proj": ("gate_up_proj", "up")}

    def __init__(self, cfg: ModelConfig, ops: Ops):
        super().__init__()
        self.config = cfg
        self.visual = VisionTransformer(cfg.vision, ops)
        self.language_model = TextModel(cfg, ops)
        self.lm_head = nn.Linear(cfg.hidden_size, cfg.vocab_size, bias=False)
        if cfg.tie_word_embeddings:
            self.lm_head.weight = self.language_model.embed_tokens.weight

    def embed(self, input_ids: torch.Tensor, image_embeds: torch.Tensor | None, image_rows: torch.Tensor | None) -> torch.Tensor:
        """Token embeddings with rows `image_rows` replaced by image_embeds."""
        x = self.language_model.embed_tokens(input_ids)
        if image_embeds is not None and image_rows is not None and image_rows.numel():
            x = x.index_copy(0, image_rows, image_embeds.to(x.dtype))
        return x

    def forward(self, embeds: torch.Tensor, positions: torch.Tensor, meta: AttentionMetadata) -> torch.Tensor:
        return self.language_model(embeds, positions, meta)

    def compute_logits(self, hidden: torch.Tensor) -> torch.Tensor:
        return self.lm_head(hidden)

    def encode_images(self, pixel_values: torch.Tensor, grid_thw: list[tuple[int, int, int]]) -> torch.Tensor:
        return self.visual(pixel_values, grid_thw)

    def attention_layers(self) -> list[PagedAttention]:
        return [layer.self_attn.attn for layer in self.language_model.layers]
