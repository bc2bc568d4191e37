"""Per-request sampling for MinerU2.5: the model's published settings plus a
max_tokens cap that MinerU does not set.

Settings (as MinerU2.5 uses them): greedy (temperature 0, top_k 1),
no_repeat_ngram_size 100; tables presence 1.0 / frequency 0.005; text and
equations presence 1.0 / frequency 0.05; layout no penalties. The fields are
exactly `inference.sampling.SamplingParams` fields, so a client can build one
with `SamplingParams(**request.sampling)`. Special tokens must be kept when
decoding (the layout grammar is made of them): that is the client's job, see
`VLMClient`.

Why caps, and which: without one a looping request decodes until the context
is full (a known user complaint), holding a batch slot and KV blocks for
thousands of useless steps. A crop cannot hold more text than its area
allows, so the cap scales with the crop's Qwen2-VL image token count
(one token per 28x28 px of the 200-dpi crop, before any processor resize):
  - text-like: 2 tokens per image token (a 28x28 patch holds ~2 glyphs at
    body size; English averages ~3-4 glyphs per token), at least 256, at most 4096;
  - table: 4 per image token (OTSL adds a cell tag per cell and numbers
    tokenise digit by digit), at least 512, at most 8192;
  - equation: 3 per image token (LaTeX spends many tokens per glyph:
    `\\frac{}{}`, `^{}`), at least 256, at most 2048;
  - layout: 4096 fixed (the image is always 1036x1036; one block costs ~20
    tokens, so ~200 blocks, beyond any real page).
The mineru-synthetic workload (text 896x140 -> 70 tokens, table 896x392 ->
250, equation 560x112 -> 60, layout 300) stays far below every cap.
"""
from __future__ import annotations

import math

PATCH_PX = 28  # Qwen2-VL: 14-px patches merged 2x2 -> one token per 28x28 px

LAYOUT_MAX_TOKENS = 4096
# kind -> (tokens per image token, floor, ceiling)
_CAP_RULES = {
    "text": (2, 256, 4096),
    "table": (4, 512, 8192),
    "equation": (3, 256, 2048),
}
_PENALTIES = {  # kind -> (presence_penalty, frequency_penalty)
    "layout": (0.0, 0.0),
    "text": (1.0, 0.05),
    "table": (1.0, 0.005),
    "equation": (1.0, 0.05),
}


def image_tokens(width_px: int, height_px: int) -> int:
    """Qwen2-VL image token count for an image of this size (no processor resize)."""
    return max(1, round(width_px / PATCH_PX)) * max(1, round(height_px / PATCH_PX))


def max_tokens_for(kind: str, width_px: int, height_px: int) -> int:
    if kind == "layout":
        return LAYOUT_MAX_TOKENS
    per_token, floor, ceiling = _CAP_RULES[kind]
    return int(min(ceiling, max(floor, math.ceil(per_token * image_tokens(width_px, height_px)))))


def sampling_for(kind: str, width_px: int, height_px: int) -> dict:
    """SamplingParams-like fields for one request of this kind and image size."""
    presence, frequency = _PENALTIES[kind]
    return {
        "temperature": 0.0,
        "top_p": 1.0,
        "top_k": 1,
        "presence_penalty": presence,
        "frequency_penalty": frequency,
        "repetition_penalty": 1.0,
        "no_repeat_ngram_size": 100,
        "max_tokens": max_tokens_for(kind, width_px, height_px),
    }
