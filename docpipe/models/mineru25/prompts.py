"""MinerU2.5 prompts and its Qwen2-VL chat template.

The user turn is the image first, then the prompt text (which starts with a
newline). The image placeholder is one `<|image_pad|>`; the engine's
processor expands it to the image's token count (e.g. 1369 for a 1036x1036
layout image), exactly as Qwen2-VL's processor does.
"""
from __future__ import annotations

import functools

SYSTEM_PROMPT = "You are a helpful assistant."

LAYOUT_PROMPT = "\nLayout Detection:"
TABLE_PROMPT = "\nTable Recognition:"
EQUATION_PROMPT = "\nFormula Recognition:"
TEXT_PROMPT = "\nText Recognition:"

IMAGE_PLACEHOLDER = "<|vision_start|><|image_pad|><|vision_end|>"

# Qwen2-VL's template for [system, user(image, text)] with the generation prompt.
CHAT_TEMPLATE = (
    "<|im_start|>system\n{system}<|im_end|>\n"
    "<|im_start|>user\n{image}{prompt}<|im_end|>\n"
    "<|im_start|>assistant\n"
)


@functools.lru_cache(maxsize=64)  # a handful of prompts, formatted once each instead of per request
def chat_prompt(prompt: str, system: str = SYSTEM_PROMPT) -> str:
    """Full prompt text for one request; the image goes where the placeholder is."""
    return CHAT_TEMPLATE.format(system=system, image=IMAGE_PLACEHOLDER, prompt=prompt)


def prompt_for(block_type: str) -> tuple[str, str]:
    """(prompt, request kind) for a step 2 block of this layout type."""
    if block_type == "table":
        return TABLE_PROMPT, "table"
    if block_type == "equation":
        return EQUATION_PROMPT, "equation"
    return TEXT_PROMPT, "text"
