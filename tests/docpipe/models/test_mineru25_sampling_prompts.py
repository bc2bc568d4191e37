from docpipe.models.mineru25 import prompts
from docpipe.models.mineru25.sampling import image_tokens, max_tokens_for, sampling_for

# inference.sampling.SamplingParams fields this family sets (the engine's contract)
SAMPLING_FIELDS = {"temperature", "top_p", "top_k", "repetition_penalty", "presence_penalty",
                   "frequency_penalty", "no_repeat_ngram_size", "max_tokens"}


def test_chat_prompt_is_qwen2_vl_with_image_first():
    text = prompts.chat_prompt(prompts.LAYOUT_PROMPT)
    assert text == ("<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n"
                    "<|im_start|>user\n<|vision_start|><|image_pad|><|vision_end|>\n"
                    "Layout Detection:<|im_end|>\n<|im_start|>assistant\n")


def test_prompt_by_block_type():
    assert prompts.prompt_for("table") == ("\nTable Recognition:", "table")
    assert prompts.prompt_for("equation") == ("\nFormula Recognition:", "equation")
    for t in ("text", "title", "code", "header", "image_caption", "unknown"):
        assert prompts.prompt_for(t) == ("\nText Recognition:", "text")


def test_sampling_per_kind():
    for kind, presence, freq in (("table", 1.0, 0.005), ("text", 1.0, 0.05),
                                 ("equation", 1.0, 0.05), ("layout", 0.0, 0.0)):
        s = sampling_for(kind, 896, 140)
        assert (s["presence_penalty"], s["frequency_penalty"]) == (presence, freq)
        assert s["temperature"] == 0.0 and s["top_k"] == 1 and s["no_repeat_ngram_size"] == 100
        assert set(s) <= SAMPLING_FIELDS  # builds an engine SamplingParams as is


def test_caps_scale_with_crop_and_are_bounded():
    assert image_tokens(1036, 1036) == 37 * 37
    assert max_tokens_for("layout", 1036, 1036) == 4096
    assert max_tokens_for("text", 56, 28) == 256  # floor
    assert max_tokens_for("text", 896, 560) == 2 * 32 * 20
    assert max_tokens_for("text", 3000, 3000) == 4096  # ceiling
    assert max_tokens_for("table", 896, 392) == 4 * 32 * 14
    assert max_tokens_for("equation", 4000, 400) == 2048
    # the mineru-synthetic output lengths (+30% jitter) fit under their caps
    for kind, (w, h), out in (("text", (896, 140), 70), ("text", (560, 56), 12),
                              ("table", (896, 392), 250), ("equation", (560, 112), 60)):
        assert max_tokens_for(kind, w, h) >= out * 1.3


def test_engine_request_has_one_placeholder_per_image():
    from PIL import Image

    from docpipe.models.vlm_page import engine_request, make_layout_request

    req = make_layout_request(Image.new("RGB", (1700, 2200), "white"))
    er = engine_request(req)
    assert er["prompt"].count("<|image_pad|>") == 1 and er["images"] == [req.image]
    assert er["prompt"].endswith("\nLayout Detection:<|im_end|>\n<|im_start|>assistant\n")
    assert req.image.size == (1036, 1036) and req.sampling["max_tokens"] == 4096
