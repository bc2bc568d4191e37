"""Processor: placeholder expansion from the checkpoint's image processor,
text and chat prompts through a tokenizer saved beside the weights, decoded
text in results, and clear errors."""
import shutil

import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from inference import LLM, SamplingParams
from qwen2vl_tiny import EOS, IMAGE, VEND, VSTART, make_image

SPECIALS = {"<|image_pad|>": IMAGE, "<|vision_start|>": VSTART, "<|vision_end|>": VEND, "<|im_end|>": EOS,
            "<|im_start|>": 305, "<unk>": 306}
TEMPLATE = ("{% for m in messages %}<|im_start|> {{ m['role'] }} {% for c in m['content'] %}"
            "{% if c['type'] == 'image' %}<|vision_start|> <|image_pad|> <|vision_end|> {% else %}{{ c['text'] }} {% endif %}"
            "{% endfor %}<|im_end|> {% endfor %}{% if add_generation_prompt %}<|im_start|> w1 {% endif %}")


@pytest.fixture(scope="module")
def ckpt_with_tokenizer(tiny_ckpt, tmp_path_factory):
    path = tmp_path_factory.mktemp("tok") / "model"
    shutil.copytree(tiny_ckpt, path)
    vocab = {f"w{i}": i for i in range(290)} | SPECIALS
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    tok.decoder = decoders.WordPiece(prefix="##")
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="<unk>", eos_token="<|im_end|>",
                                   additional_special_tokens=[k for k in SPECIALS if k != "<unk>"])
    fast.chat_template = TEMPLATE
    fast.save_pretrained(str(path))
    return str(path)


def test_text_and_chat_prompts_expand_images_and_decode(ckpt_with_tokenizer):
    llm = LLM(ckpt_with_tokenizer, dtype="float32", device="cpu", num_kv_blocks=32, mode="eager")
    image = make_image(112, 84, 0)  # 84x112 px -> 6x8 patches -> 12 tokens
    text = llm.engine.processor({"prompt": "w5 <|vision_start|><|image_pad|><|vision_end|> w6", "images": [image]})
    assert text.token_ids == [5, VSTART] + [IMAGE] * 12 + [VEND, 6]
    assert text.image_grid_thw == [(1, 6, 8)]
    chat = {"messages": [{"role": "w2", "content": [{"type": "image"}, {"type": "text", "text": "w7"}]}], "images": [image]}
    assert llm.engine.processor(chat).token_ids == [305, 2, VSTART] + [IMAGE] * 12 + [VEND, 7, EOS, 305, 1]
    out = llm.generate(chat, SamplingParams(temperature=0, max_tokens=5, ignore_eos=True))[0]
    want = llm.engine.processor.tokenizer.decode(out.token_ids, skip_special_tokens=True)
    assert out.text == want and len(out.token_ids) == 5


def test_placeholder_count_must_match_images(tiny_ckpt):
    llm = LLM(tiny_ckpt, dtype="float32", device="cpu", num_kv_blocks=8, mode="eager")
    with pytest.raises(ValueError, match="1 <\\|image_pad\\|> placeholders but 2 images"):
        llm.generate({"prompt_token_ids": [VSTART, IMAGE, VEND], "images": [make_image(56, 56, 0)] * 2})
    with pytest.raises(ValueError, match="no tokenizer"):
        llm.generate({"prompt": "w1"})
