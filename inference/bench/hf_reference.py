"""The transformers side of the engine benchmark: a Qwen2-VL checkpoint of a
named shape with random weights, saved with save_pretrained so that our
engine loads the very same weights through its real loading path, and the
reference calls (teacher-forced logits, generate() timings).

Every reference call passes `mm_token_type_ids` when the installed
transformers accepts it: Qwen2-VL in transformers >= 5 derives M-RoPE
positions from it and silently falls back to 1-D positions without it.
"""
from __future__ import annotations

import inspect
import time

import torch

from inference.models.model_config import ModelConfig


def hf_config(cfg: ModelConfig):
    from transformers import Qwen2VLConfig

    rope = {"rope_type": "default", "mrope_section": list(cfg.mrope_section), "rope_theta": cfg.rope_theta}
    text = dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                num_key_value_heads=cfg.num_key_value_heads, rms_norm_eps=cfg.rms_norm_eps,
                max_position_embeddings=cfg.max_position_embeddings, rope_parameters=rope,
                eos_token_id=cfg.eos_token_ids[0] if cfg.eos_token_ids else None, bos_token_id=None,
                pad_token_id=0, initializer_range=0.02)
    v = cfg.vision
    vision = dict(depth=v.depth, embed_dim=v.embed_dim, hidden_size=v.hidden_size, mlp_ratio=v.mlp_ratio,
                  num_heads=v.num_heads, in_channels=v.in_channels, patch_size=v.patch_size,
                  spatial_merge_size=v.spatial_merge_size, temporal_patch_size=v.temporal_patch_size)
    out = Qwen2VLConfig(text_config=text, vision_config=vision, image_token_id=cfg.image_token_id,
                        video_token_id=_video_token_id(cfg), vision_start_token_id=cfg.vision_start_token_id,
                        vision_end_token_id=cfg.vision_end_token_id, tie_word_embeddings=cfg.tie_word_embeddings)
    out._attn_implementation = "sdpa"
    return out


def _video_token_id(cfg: ModelConfig) -> int:
    """Qwen2-VL's id in a full vocabulary; in a tiny one an unused id clear of
    the vision start/end ids that follow the image id."""
    return 151656 if cfg.vocab_size > 151656 else cfg.image_token_id + 4


def save_random_checkpoint(cfg: ModelConfig, path: str, dtype: torch.dtype, device: str, seed: int = 0,
                           max_pixels: int | None = None) -> str:
    """Random-weight checkpoint of shape `cfg` in `path` (+ image processor
    capping images at `max_pixels`, default 16384 tokens)."""
    from transformers import Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    torch.manual_seed(seed)
    with torch.device(device):
        model = Qwen2VLForConditionalGeneration(hf_config(cfg)).to(dtype)
    model.save_pretrained(path)
    # max_pixels as MinerU uses it: a 1036x1036 layout page stays 37x37 = 1369 tokens
    # (the processor's default cap of 1280 tokens would shrink it).
    unit = (cfg.vision.patch_size * cfg.vision.spatial_merge_size) ** 2
    Qwen2VLImageProcessor(patch_size=cfg.vision.patch_size, merge_size=cfg.vision.spatial_merge_size,
                          temporal_patch_size=cfg.vision.temporal_patch_size, min_pixels=4 * unit,
                          max_pixels=max_pixels or 16384 * unit).save_pretrained(path)
    del model
    return path


def load(path: str, dtype: torch.dtype, device: str):
    from transformers import Qwen2VLForConditionalGeneration

    try:
        model = Qwen2VLForConditionalGeneration.from_pretrained(path, dtype=dtype, attn_implementation="sdpa")
    except TypeError:  # transformers 4.x names it torch_dtype
        model = Qwen2VLForConditionalGeneration.from_pretrained(path, torch_dtype=dtype, attn_implementation="sdpa")
    return model.to(device).eval()


def inputs(processed_list, model, image_token_id: int, device: str) -> dict:
    """Batched forward/generate kwargs from engine-processed prompts of equal length."""
    ids = torch.tensor([p.token_ids for p in processed_list], device=device)
    kw = {"input_ids": ids, "attention_mask": torch.ones_like(ids)}
    if processed_list[0].pixel_values is not None:
        kw["pixel_values"] = torch.cat([p.pixel_values for p in processed_list]).to(device, model.dtype)
        kw["image_grid_thw"] = torch.tensor([g for p in processed_list for g in p.image_grid_thw], device=device)
    if "mm_token_type_ids" in inspect.signature(model.forward).parameters:
        kw["mm_token_type_ids"] = (ids == image_token_id).int()
    return kw


@torch.inference_mode()
def teacher_forced_logits(model, processed, generated: list[int], image_token_id: int, device: str) -> torch.Tensor:
    """Logits at the positions that predicted `generated` ([n, vocab], fp32)."""
    from dataclasses import replace

    full = replace(processed, token_ids=list(processed.token_ids) + list(generated[:-1]))
    kw = inputs([full], model, image_token_id, device)
    logits = model(**kw).logits[0].float()
    start = len(processed.token_ids) - 1
    return logits[start : start + len(generated)].cpu()


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


class _StepClock:
    """A logits processor that only records when each generation step reached it: generate()
    syncs with the device every step (its stopping check reads a device value), so the
    intervals are the steps' wall times."""

    def __init__(self):
        self.times: list[float] = []

    def __call__(self, input_ids, scores):
        self.times.append(time.perf_counter())
        return scores


@torch.inference_mode()
def decode_step_s(model, kw: dict, new_tokens: int, device: str) -> float:
    """Mean seconds per generated token after the first, within one generate() call (no
    difference of two separate runs, which noise can make negative on a small model)."""
    from transformers import LogitsProcessorList

    assert new_tokens >= 2, "a decode step needs at least two generated tokens"
    clock = _StepClock()
    _sync(device)
    model.generate(**kw, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                   eos_token_id=None, pad_token_id=0, logits_processor=LogitsProcessorList([clock]))
    _sync(device)
    return (clock.times[-1] - clock.times[0]) / (len(clock.times) - 1)


@torch.inference_mode()
def generate_timed(model, kw: dict, new_tokens: int, device: str) -> tuple[float, torch.Tensor]:
    _sync(device)
    t = time.perf_counter()
    out = model.generate(**kw, max_new_tokens=new_tokens, min_new_tokens=new_tokens, do_sample=False,
                         eos_token_id=None, pad_token_id=0)
    _sync(device)
    return time.perf_counter() - t, out[:, kw["input_ids"].shape[1]:]
