"""Build a model from a local HF directory (safetensors + config.json) or
from `dummy:<preset>` (random weights of a named shape).

Checkpoint names are mapped onto the engine's modules; both layouts occur:
  transformers 4.x / on-disk: model.embed_tokens..., model.layers..., visual..., lm_head
  transformers 5.x in memory:  model.language_model..., model.visual..., lm_head
q/k/v and gate/up tensors land in their slice of the packed projection.
Every engine parameter must be filled exactly once (a tied lm_head is the
embedding), else loading fails naming the missing or unknown tensors.
"""
from __future__ import annotations

from pathlib import Path

import torch
from safetensors import safe_open

from inference.layers.norm import RMSNorm
from inference.layers.rotary import inv_freq
from inference.models.model_config import ModelConfig
from inference.models.presets import get_preset
from inference.models.qwen2_vl import Qwen2VLForConditionalGeneration
from inference.ops.base import Ops

# Longest prefix first: checkpoint prefix -> engine prefix.
PREFIX_MAP = [
    ("model.language_model.", "language_model."),
    ("model.visual.", "visual."),
    ("language_model.model.", "language_model."),
    ("model.", "language_model."),
    ("visual.", "visual."),
    ("lm_head.", "lm_head."),
]
DUMMY_PREFIX = "dummy:"


def map_name(ckpt_name: str) -> str | None:
    for src, dst in PREFIX_MAP:
        if ckpt_name.startswith(src):
            return dst + ckpt_name[len(src):]
    return None


def load_config(model: str) -> ModelConfig:
    if model.startswith(DUMMY_PREFIX):
        return get_preset(model[len(DUMMY_PREFIX):])
    return ModelConfig.from_dir(model)


def _init_dummy(model: torch.nn.Module, seed: int) -> None:
    """Random weights drawn on the model's device (fast for full shapes)."""
    norms = (RMSNorm, torch.nn.LayerNorm)
    with torch.no_grad():
        for module in model.modules():
            for leaf, param in module.named_parameters(recurse=False):
                gen = torch.Generator(device=param.device).manual_seed(seed)
                seed += 1
                if isinstance(module, norms) and leaf == "weight":
                    param.fill_(1.0)
                elif leaf == "bias":
                    param.zero_()
                else:
                    param.normal_(0.0, 0.02, generator=gen)


def _load_safetensors(model: Qwen2VLForConditionalGeneration, path: Path) -> None:
    files = sorted(path.glob("*.safetensors"))
    if not files:
        raise FileNotFoundError(f"{path}: no *.safetensors files")
    params = dict(model.named_parameters())
    modules = dict(model.named_modules())
    loaded: set[str] = set()
    unknown: list[str] = []
    for file in files:
        with safe_open(str(file), framework="pt", device="cpu") as f:
            for ckpt_name in f.keys():
                name = map_name(ckpt_name)
                if name is None:
                    unknown.append(ckpt_name)
                    continue
                if name.endswith("inv_freq"):  # rotary tables are computed, never loaded
                    continue
                tensor = f.get_tensor(ckpt_name)
                module_path, _, leaf = name.rpartition(".")
                parent, _, sub = module_path.rpartition(".")
                if sub in model.packed_modules:
                    packed, shard = model.packed_modules[sub]
                    target = f"{parent}.{packed}"
                    modules[target].load_shard(leaf, shard, tensor)
                    loaded.add(f"{target}.{leaf}:{shard}")
                    continue
                if name not in params:
                    unknown.append(ckpt_name)
                    continue
                with torch.no_grad():
                    if params[name].shape != tensor.shape:
                        raise ValueError(f"{file.name}: {ckpt_name} has shape {tuple(tensor.shape)}, "
                                         f"engine expects {tuple(params[name].shape)}")
                    params[name].copy_(tensor)
                loaded.add(name)
    if unknown:
        raise ValueError(f"{path}: tensors the engine does not know: {unknown[:8]}")
    missing = _missing(model, params, modules, loaded)
    if missing:
        raise ValueError(f"{path}: checkpoint lacks {missing[:8]}")


def _missing(model, params: dict, modules: dict, loaded: set[str]) -> list[str]:
    missing = []
    for name in params:
        if name == "lm_head.weight" and model.config.tie_word_embeddings:
            continue
        module_path, _, leaf = name.rpartition(".")
        packed = modules[module_path]
        shards = getattr(packed, "shard_offsets", None)
        if shards:
            missing += [f"{name}:{s}" for s in shards if f"{name}:{s}" not in loaded]
        elif name not in loaded:
            missing.append(name)
    return missing


def load_model(model: str, dtype: torch.dtype, device: torch.device, ops: Ops, seed: int = 0) -> Qwen2VLForConditionalGeneration:
    """The model in `dtype` on `device`, in eval mode, weights loaded."""
    cfg = load_config(model)
    with torch.device(device):
        net = Qwen2VLForConditionalGeneration(cfg, ops).to(dtype)
    if model.startswith(DUMMY_PREFIX):
        _init_dummy(net, seed)
    else:
        _load_safetensors(net, Path(model))
    # Rotary frequencies stay fp32 whatever the weight dtype.
    net.language_model.rotary.inv_freq = inv_freq(cfg.head_dim, cfg.rope_theta, device)
    return net.eval().requires_grad_(False)
