"""Tiny random Qwen2-VL checkpoints built with transformers, and the HF
reference helpers every engine comparison uses.

Every HF reference call passes `mm_token_type_ids` when the installed
transformers accepts it: with transformers >= 5, Qwen2-VL computes M-RoPE
positions only from it (without it, generate() silently falls back to 1-D
positions).
"""
from __future__ import annotations

import inspect

import torch
from PIL import Image

TINY = dict(
    text_config=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, initializer_range=0.05,
                     bos_token_id=0, eos_token_id=303, pad_token_id=0,
                     rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
    vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, initializer_range=0.05),
    image_token_id=300, video_token_id=304, vision_start_token_id=301, vision_end_token_id=302,
)
IMAGE, VSTART, VEND, EOS = 300, 301, 302, 303


def build_hf_model(tie: bool = False, seed: int = 0):
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration

    torch.manual_seed(seed)
    cfg = Qwen2VLConfig(**TINY, tie_word_embeddings=tie)
    cfg._attn_implementation = "eager"
    return Qwen2VLForConditionalGeneration(cfg).eval()


def save_checkpoint(model, path) -> str:
    from transformers import Qwen2VLImageProcessor

    model.save_pretrained(str(path))
    Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 64).save_pretrained(str(path))
    return str(path)


def make_image(width: int, height: int, seed: int) -> Image.Image:
    gen = torch.Generator().manual_seed(seed)
    pixels = torch.randint(0, 256, (height, width, 3), generator=gen, dtype=torch.uint8)
    return Image.fromarray(pixels.numpy())


def image_prompt(text_before: list[int], text_after: list[int], num_images: int = 1) -> list[int]:
    ids = list(text_before)
    for _ in range(num_images):
        ids += [VSTART, IMAGE, VEND]
    return ids + list(text_after)


def hf_inputs(processed, model) -> dict:
    """HF forward/generate kwargs for one engine-processed prompt (batch 1)."""
    ids = torch.tensor([processed.token_ids])
    kwargs = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if processed.pixel_values is not None:
        kwargs["pixel_values"] = processed.pixel_values
        kwargs["image_grid_thw"] = torch.tensor(processed.image_grid_thw)
    if hf_accepts_mm_token_type_ids(model):
        kwargs["mm_token_type_ids"] = (ids == IMAGE).int()
    return kwargs


def hf_accepts_mm_token_type_ids(model) -> bool:
    return "mm_token_type_ids" in inspect.signature(model.forward).parameters
