"""The model shape the engine needs, parsed from a HF `config.json`.

Both on-disk layouts are read: transformers 5.x (nested `text_config` with
`rope_parameters`) and 4.x (text fields at top level, `rope_scaling` with
`mrope_section`, `rope_theta` beside it). Parsing the JSON ourselves keeps the
engine independent of the installed transformers version.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class VisionConfig:
    depth: int = 32                  # number of vision blocks
    embed_dim: int = 1280            # vision width
    hidden_size: int = 1536          # merger output = LM hidden size
    mlp_ratio: float = 4.0           # vision MLP width / embed_dim
    num_heads: int = 16
    in_channels: int = 3
    patch_size: int = 14             # pixels per patch side
    spatial_merge_size: int = 2      # patches per merged token side
    temporal_patch_size: int = 2     # frames per patch (images are repeated)
    hidden_act: str = "quick_gelu"
    rope_theta: float = 10000.0
    # Image processor pixel bounds for checkpoints without a preprocessor config
    # (dummy presets); None = the processor's own defaults.
    min_pixels: int | None = None
    max_pixels: int | None = None

    @property
    def head_dim(self) -> int:
        return self.embed_dim // self.num_heads


@dataclass
class ModelConfig:
    vocab_size: int = 151936
    hidden_size: int = 896
    intermediate_size: int = 4864
    num_hidden_layers: int = 24
    num_attention_heads: int = 14
    num_key_value_heads: int = 2
    rms_norm_eps: float = 1e-6
    rope_theta: float = 1000000.0
    mrope_section: list[int] = field(default_factory=lambda: [16, 24, 24])  # rotary pairs per (t, h, w) axis
    max_position_embeddings: int = 32768
    tie_word_embeddings: bool = True
    image_token_id: int = 151655
    vision_start_token_id: int = 151652
    vision_end_token_id: int = 151653
    eos_token_ids: list[int] = field(default_factory=lambda: [151645])
    torch_dtype: str = "bfloat16"    # dtype the checkpoint was saved in
    vision: VisionConfig = field(default_factory=VisionConfig)

    def __post_init__(self):
        assert self.hidden_size % self.num_attention_heads == 0, "hidden_size must split into heads"
        assert self.num_attention_heads % self.num_key_value_heads == 0, "heads must group over KV heads"
        assert sum(self.mrope_section) * 2 == self.head_dim, f"mrope_section {self.mrope_section} must cover head_dim/2"
        assert self.vision.hidden_size == self.hidden_size, "vision merger must output the LM hidden size"

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads

    @classmethod
    def from_dict(cls, cfg: dict) -> "ModelConfig":
        text = dict(cfg.get("text_config") or cfg)  # 5.x nests, 4.x is flat
        rope = text.get("rope_parameters") or text.get("rope_scaling") or cfg.get("rope_scaling") or {}
        theta = rope.get("rope_theta", text.get("rope_theta", cfg.get("rope_theta", 1000000.0)))
        vis = dict(cfg.get("vision_config") or {})
        vis_rope = vis.get("rope_parameters") or {}
        eos = cfg.get("eos_token_id", text.get("eos_token_id"))
        tie = cfg.get("tie_word_embeddings", False) or text.get("tie_word_embeddings", False)
        vision = VisionConfig(
            depth=vis.get("depth", 32), embed_dim=vis.get("embed_dim", 1280),
            hidden_size=vis.get("hidden_size", text["hidden_size"]), mlp_ratio=vis.get("mlp_ratio", 4),
            num_heads=vis.get("num_heads", 16), in_channels=vis.get("in_channels", 3),
            patch_size=vis.get("patch_size", 14), spatial_merge_size=vis.get("spatial_merge_size", 2),
            temporal_patch_size=vis.get("temporal_patch_size", 2), hidden_act=vis.get("hidden_act", "quick_gelu"),
            rope_theta=vis_rope.get("rope_theta", 10000.0),
        )
        return cls(
            vocab_size=text["vocab_size"], hidden_size=text["hidden_size"],
            intermediate_size=text["intermediate_size"], num_hidden_layers=text["num_hidden_layers"],
            num_attention_heads=text["num_attention_heads"],
            num_key_value_heads=text.get("num_key_value_heads") or text["num_attention_heads"],
            rms_norm_eps=text.get("rms_norm_eps", 1e-6), rope_theta=float(theta),
            mrope_section=list(rope.get("mrope_section", [16, 24, 24])),
            max_position_embeddings=text.get("max_position_embeddings", 32768), tie_word_embeddings=bool(tie),
            image_token_id=cfg.get("image_token_id", 151655),
            vision_start_token_id=cfg.get("vision_start_token_id", 151652),
            vision_end_token_id=cfg.get("vision_end_token_id", 151653),
            eos_token_ids=[] if eos is None else ([eos] if isinstance(eos, int) else list(eos)),
            torch_dtype=str(cfg.get("dtype") or cfg.get("torch_dtype") or text.get("torch_dtype") or "bfloat16"),
            vision=vision,
        )

    @classmethod
    def from_dir(cls, path: str | Path) -> "ModelConfig":
        config_file = Path(path) / "config.json"
        if not config_file.is_file():
            raise FileNotFoundError(f"{config_file}: no config.json in the model directory")
        with open(config_file) as f:
            return cls.from_dict(json.load(f))
