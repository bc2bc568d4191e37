"""Synthetic engine requests for the benchmarks: seeded noise pixels and
ordinary text token ids around one image placeholder. Random weights make
the content irrelevant; only the shapes matter, and the same seed gives the
same request."""
from __future__ import annotations

TEXT_ID_CAP = 20000  # ordinary vocabulary ids stay well inside any Qwen2 vocabulary


def noise_image(width_px: int, height_px: int, rng):
    """A seeded RGB noise image (rng: numpy Generator)."""
    from PIL import Image

    return Image.fromarray(rng.integers(0, 256, size=(height_px, width_px, 3), dtype="uint8"))


def noise_request(width_px: int, height_px: int, special_ids: tuple[int, int, int], rng,
                  text_tokens: int = 20) -> dict:
    """{"prompt_token_ids", "images"}: half the text, <|vision_start|><|image_pad|><|vision_end|>,
    the other half. special_ids = (vision_start, image_pad, vision_end); rng: numpy Generator.
    Text ids stay below the special ids (tiny vocabularies put those near their end)."""
    image = noise_image(width_px, height_px, rng)
    high = min(TEXT_ID_CAP, min(special_ids))
    text = [int(t) for t in rng.integers(min(10, high - 1), high, size=text_tokens)]
    half = text_tokens // 2
    return {"prompt_token_ids": text[:half] + list(special_ids) + text[half:], "images": [image]}
