"""A tiny random Qwen2-VL checkpoint for VLM-path tests: HF safetensors, an
image processor that caps images at 64 tokens (so a 1036x1036 layout image
costs milliseconds on a CPU), and a byte-level tokenizer whose special
tokens are the MinerU2.5 grammar's, at the tiny preset's ids (image pad 300,
vision start 301, vision end 302, <|im_end|> 303 = EOS)."""
from __future__ import annotations

from pathlib import Path

SPECIAL_IDS = {
    "<|im_start|>": 256, "<|endoftext|>": 257, "<|box_start|>": 258, "<|box_end|>": 259,
    "<|ref_start|>": 260, "<|ref_end|>": 261, "<|rotate_up|>": 262, "<|rotate_right|>": 263,
    "<|rotate_down|>": 264, "<|rotate_left|>": 265,
    "<|image_pad|>": 300, "<|vision_start|>": 301, "<|vision_end|>": 302, "<|im_end|>": 303,
}
TINY = dict(
    text_config=dict(vocab_size=320, hidden_size=64, intermediate_size=128, num_hidden_layers=2,
                     num_attention_heads=4, num_key_value_heads=2, rms_norm_eps=1e-6, initializer_range=0.05,
                     bos_token_id=0, eos_token_id=303, pad_token_id=0,
                     rope_parameters={"rope_type": "default", "mrope_section": [2, 3, 3], "rope_theta": 10000.0}),
    vision_config=dict(depth=2, embed_dim=32, hidden_size=64, num_heads=2, mlp_ratio=2, initializer_range=0.05),
    image_token_id=300, video_token_id=304, vision_start_token_id=301, vision_end_token_id=302,
)


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
    import torch
    from transformers import Qwen2VLConfig, Qwen2VLForConditionalGeneration, Qwen2VLImageProcessor

    torch.manual_seed(seed)
    model = Qwen2VLForConditionalGeneration(Qwen2VLConfig(**TINY, tie_word_embeddings=False)).eval()
    model.save_pretrained(str(path))
    Qwen2VLImageProcessor(min_pixels=56 * 56, max_pixels=28 * 28 * 64).save_pretrained(str(path))
    build_tokenizer().save_pretrained(str(path))
    return str(path)
