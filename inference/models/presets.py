"""Named model shapes for `dummy:<preset>` (random weights): benchmarks use
full-size shapes, since output lengths are then forced; tests use `tiny`."""
from __future__ import annotations

from inference.models.model_config import ModelConfig, VisionConfig


def _mineru25() -> ModelConfig:
    # MinerU2.5-2509-1.2B: Qwen2-VL LM 896x24 (14 heads, 2 KV), tied, vision 1280x32.
    return ModelConfig(
        vocab_size=151936, hidden_size=896, intermediate_size=4864, num_hidden_layers=24,
        num_attention_heads=14, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=1000000.0,
        mrope_section=[8, 12, 12], tie_word_embeddings=True,  # head_dim 64 -> 32 rotary pairs
        # MinerU feeds its layout pass a 1036x1036 image (1369 tokens); the pixel cap lets it through
        # unresized, where the processor's generic default (1280 tokens) would shrink it to 980 px.
        vision=VisionConfig(depth=32, embed_dim=1280, hidden_size=896, mlp_ratio=4, num_heads=16,
                            min_pixels=56 * 56, max_pixels=1036 * 1036),
    )


def _tiny() -> ModelConfig:
    # Small enough for CPU tests; special token ids inside the small vocab.
    return ModelConfig(
        vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
        num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, rope_theta=10000.0,
        mrope_section=[2, 3, 3], tie_word_embeddings=False, image_token_id=300,
        vision_start_token_id=301, vision_end_token_id=302, eos_token_ids=[303], torch_dtype="float32",
        vision=VisionConfig(depth=2, embed_dim=32, hidden_size=64, mlp_ratio=2, num_heads=2),
    )


PRESETS = {"mineru2.5": _mineru25, "tiny": _tiny}


def get_preset(name: str) -> ModelConfig:
    if name not in PRESETS:
        raise ValueError(f"unknown dummy preset {name!r}; known: {sorted(PRESETS)}")
    return PRESETS[name]()
