"""The `mineru-synthetic` workload (DESIGN.md, "Measuring"): per page one
layout request on a 1036x1036 image, then the page's block requests, sized to
MinerU2.5's published ~3,256 vision tokens and ~1,200 output tokens a page.

Block sizes and output lengths get a seeded ±30% jitter (sizes rounded to
whole 28-px units), so the same seed always gives the same work. Output
lengths are forced by the benchmarks (ignore EOS).
"""
from __future__ import annotations

import random
from dataclasses import dataclass

PATCH_UNIT_PX = 28  # one image token covers 28x28 px (patch 14, spatial merge 2)
LAYOUT_SIDE_PX = 1036  # the layout image is always exactly 1036x1036

# kind -> (count per page, width px, height px, output tokens)
PAGE_MIX = {
    "layout": (1, LAYOUT_SIDE_PX, LAYOUT_SIDE_PX, 300),
    "text": (8, 896, 140, 70),
    "title": (2, 560, 56, 12),
    "table": (1, 896, 392, 250),
    "equation": (1, 560, 112, 60),
}
JITTER = 0.30
PROMPT_TEXT_TOKENS = 20  # chat template + instruction, as in MinerU's prompts


@dataclass(frozen=True)
class SyntheticRequest:
    page: int  # page index in the workload
    kind: str  # layout | text | title | table | equation
    width_px: int  # image width, a multiple of 28
    height_px: int  # image height, a multiple of 28
    output_tokens: int  # forced output length

    @property
    def image_tokens(self) -> int:
        return (self.width_px // PATCH_UNIT_PX) * (self.height_px // PATCH_UNIT_PX)


def _jitter_px(rng: random.Random, px: int) -> int:
    units = round(px * rng.uniform(1 - JITTER, 1 + JITTER) / PATCH_UNIT_PX)
    return max(1, units) * PATCH_UNIT_PX


def _jitter_len(rng: random.Random, n: int) -> int:
    return max(1, round(n * rng.uniform(1 - JITTER, 1 + JITTER)))


def mineru_synthetic(num_pages: int, seed: int = 0) -> list[list[SyntheticRequest]]:
    """Per page: [layout request, block requests...]. Block requests of a page
    are issued once its layout request has finished."""
    rng = random.Random(seed)
    pages = []
    for page in range(num_pages):
        reqs = []
        for kind, (count, w, h, out) in PAGE_MIX.items():
            for _ in range(count):
                if kind == "layout":
                    size = (LAYOUT_SIDE_PX, LAYOUT_SIDE_PX)
                else:
                    size = (_jitter_px(rng, w), _jitter_px(rng, h))
                reqs.append(SyntheticRequest(page, kind, *size, _jitter_len(rng, out)))
        pages.append(reqs)
    return pages


def engine_request(req: SyntheticRequest, image_token_ids: tuple[int, int, int], seed: int = 0) -> dict:
    """An engine request for `req`: a seeded noise image and a prompt of
    PROMPT_TEXT_TOKENS text tokens around one image placeholder.
    image_token_ids: (vision_start, image_pad, vision_end)."""
    import numpy as np

    from inference.bench.synthetic import noise_request

    rng = np.random.default_rng([seed, req.page, req.width_px, req.height_px, req.output_tokens])
    return noise_request(req.width_px, req.height_px, image_token_ids, rng, PROMPT_TEXT_TOKENS)


def totals(pages: list[list[SyntheticRequest]]) -> dict[str, float]:
    n = max(1, len(pages))
    reqs = [r for p in pages for r in p]
    return {
        "pages": len(pages),
        "requests": len(reqs),
        "image_tokens_per_page": sum(r.image_tokens for r in reqs) / n,
        "output_tokens_per_page": sum(r.output_tokens for r in reqs) / n,
    }
