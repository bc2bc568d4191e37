"""A tiny random Qwen2-VL checkpoint for VLM-path tests: HF safetensors, an
image processor that caps images at 64 tokens (so a 1036x1036 layout image
costs milliseconds on a CPU), and a byte-level tokenizer whose special
tokens are the MinerU2.5 grammar's, at the tiny preset's ids (image pad 300,
vision start 301, vision end 302, <|im_end|> 303 = EOS)."""
from __future__ import annotations

import importlib.util
from pathlib import Path

SPECIAL_IDS = {
    "<|im_start|>": 256, "<|endoftext|>": 257, "<|box_start|>": 258, "<|box_end|>": 259,
    "<|ref_start|>": 260, "<|ref_end|>": 261, "<|rotate_up|>": 262, "<|rotate_right|>": 263,
    "<|rotate_down|>": 264, "<|rotate_left|>": 265,
    "<|image_pad|>": 300, "<|vision_start|>": 301, "<|vision_end|>": 302, "<|im_end|>": 303,
}


def _engine_tiny():
    """The engine tests' tiny Qwen2-VL (tests/inference/qwen2vl_tiny.py), loaded
    by path so the shape has one definition whichever test folder is collected."""
    path = Path(__file__).resolve().parents[2] / "inference" / "qwen2vl_tiny.py"
    spec = importlib.util.spec_from_file_location("_vlm_qwen2vl_tiny", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def build_tokenizer():
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {c: i for i, c in enumerate(sorted(pre_tokenizers.ByteLevel.alphabet()))}
    vocab.update(SPECIAL_IDS)
    tok = Tokenizer(models.BPE(vocab=vocab, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in SPECIAL_IDS])
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>")


def build_checkpoint(path: Path, seed: int = 0) -> str:
    engine_tiny = _engine_tiny()
    engine_tiny.save_checkpoint(engine_tiny.build_hf_model(seed=seed), path)
    build_tokenizer().save_pretrained(str(path))
    return str(path)
