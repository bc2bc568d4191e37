"""Loading: both checkpoint naming schemes, tied embeddings, dtypes, clear
errors, and the dummy presets' shapes."""
import json
import shutil

import pytest
import torch
from safetensors.torch import load_file, save_file

from inference import LLM, SamplingParams
from inference.models.loader import load_model
from inference.models.presets import get_preset
from inference.models.qwen2_vl import Qwen2VLForConditionalGeneration
from inference.ops import get_ops
from qwen2vl_tiny import build_hf_model, hf_inputs, save_checkpoint

CPU = torch.device("cpu")


def _rewrite(src, dst, rename):
    shutil.copytree(src, dst)
    tensors = load_file(f"{src}/model.safetensors")
    (dst / "model.safetensors").unlink()
    save_file({rename(k): v.contiguous() for k, v in tensors.items()}, str(dst / "model.safetensors"))
    return str(dst)


def _v5(name):
    if name.startswith("model."):
        return "model.language_model." + name[len("model."):]
    return "model." + name if name.startswith("visual.") else name


def test_transformers5_layout_loads_the_same_weights(tiny_ckpt, tmp_path):
    v5_dir = _rewrite(tiny_ckpt, tmp_path / "v5", _v5)
    ops = get_ops(CPU)
    old, new = load_model(tiny_ckpt, torch.float32, CPU, ops), load_model(v5_dir, torch.float32, CPU, ops)
    for (name, a), (_, b) in zip(old.state_dict().items(), new.state_dict().items()):
        assert torch.equal(a, b), name


def test_missing_and_unknown_tensors_fail_with_names(tiny_ckpt, tmp_path):
    broken = _rewrite(tiny_ckpt, tmp_path / "broken", lambda k: k.replace("layers.1.mlp.up_proj", "layers.1.mlp.upp"))
    with pytest.raises(ValueError, match="upp"):
        load_model(broken, torch.float32, CPU, get_ops(CPU))


def test_tied_embeddings_match_transformers(tmp_path):
    hf = build_hf_model(tie=True, seed=3)
    path = save_checkpoint(hf, tmp_path / "tied")
    assert json.load(open(f"{path}/config.json"))["tie_word_embeddings"]
    llm = LLM(path, dtype="float32", device="cpu", num_kv_blocks=16, mode="eager")
    model = llm.engine.runner.model
    assert model.lm_head.weight is model.language_model.embed_tokens.weight
    prompt_ids = [3, 4, 5, 6, 7]
    out = llm.generate({"prompt_token_ids": prompt_ids}, SamplingParams(temperature=0, max_tokens=1, return_logits=True))[0]
    prompt = llm.engine.processor({"prompt_token_ids": prompt_ids})
    with torch.no_grad():
        ref = hf(**hf_inputs(prompt, hf)).logits[0, -1]
    torch.testing.assert_close(out.logits[0], ref, atol=1e-4, rtol=0)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_half_dtypes_round_the_fp32_weights(tiny_ckpt, dtype):
    ops = get_ops(CPU)
    full, half = load_model(tiny_ckpt, torch.float32, CPU, ops), load_model(tiny_ckpt, dtype, CPU, ops)
    weight = "language_model.layers.0.self_attn.qkv_proj.weight"
    assert half.state_dict()[weight].dtype == dtype
    assert torch.equal(half.state_dict()[weight], full.state_dict()[weight].to(dtype))
    assert half.language_model.rotary.inv_freq.dtype == torch.float32


def test_mineru_preset_has_the_published_size():
    with torch.device("meta"):
        model = Qwen2VLForConditionalGeneration(get_preset("mineru2.5"), get_ops(CPU))
    num_params = sum(p.numel() for p in model.parameters())  # tied lm_head counted once
    assert abs(num_params - 1.156e9) / 1.156e9 < 0.01, num_params


def test_dummy_tiny_generates():
    llm = LLM("dummy:tiny", dtype="float32", device="cpu", num_kv_blocks=8, mode="eager")
    out = llm.generate({"prompt_token_ids": [1, 2, 3]}, SamplingParams(temperature=0, max_tokens=4, ignore_eos=True))[0]
    assert len(out.token_ids) == 4 and out.finish_reason == "length"


def test_flat_transformers4_config_parses_like_nested(tiny_ckpt):
    from inference.models.model_config import ModelConfig

    nested = json.load(open(f"{tiny_ckpt}/config.json"))
    text = dict(nested["text_config"])
    rope = text.pop("rope_parameters")
    flat = {k: v for k, v in nested.items() if k != "text_config"} | text
    flat |= {"rope_theta": rope["rope_theta"], "rope_scaling": {"type": "mrope", "mrope_section": rope["mrope_section"]}}
    assert ModelConfig.from_dict(flat) == ModelConfig.from_dict(nested)
