"""The two-step VLM flow for one page, as separate steps a scheduler can batch.

    req = make_layout_request(render)                  # step 1 request
    blocks = blocks_from_layout(answer)                # after the layout answer
    breqs = make_block_requests(blocks, render)        # step 2 requests (+ crops, hybrid text)
    page = finish_page(blocks, answers_for(breqs, outputs), page_idx, w_pt, h_pt)

A scheduler batching across pages and documents keeps `(render, blocks,
breqs)` per page, sends every page's requests to the client together, and
calls `finish_page` when all of a page's answers are in. `convert_page` runs
the steps for one page with one client call per step. `engine_request`
turns a VLMRequest into the embedded engine's request dict.

`render` is the page at 200 dpi (long side at most 3500 px), RGB. In hybrid
mode `text_for_bbox(bbox)` gets a plain text block's box as page fractions
(x0, y0, x1, y1 in 0..1; multiply by the page size in points) and returns the
text layer's text for it, or None to ask the VLM instead.
"""
from __future__ import annotations

import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from PIL import Image

from docpipe.models.base import LayoutBlock, ModelFamily, VLMClient, VLMRequest, get_family
from docpipe.schema import PageResult

DEFAULT_FAMILY = "mineru25"
HYBRID_TYPES = frozenset({"text"})  # block types the text layer may stand in for
TextForBBox = Callable[[tuple[float, float, float, float]], "str | None"]


@dataclass
class BlockRequest:
    block_idx: int  # index into the page's block list
    request: VLMRequest  # what to ask the model for that block


def _family(family: ModelFamily | None) -> ModelFamily:
    return family if family is not None else get_family(DEFAULT_FAMILY)


def make_layout_request(render: Image.Image, family: ModelFamily | None = None) -> VLMRequest:
    return _family(family).layout_request(render)


def blocks_from_layout(answer: str, family: ModelFamily | None = None) -> list[LayoutBlock]:
    return _family(family).parse_layout(answer)


def make_block_requests(blocks: list[LayoutBlock], render: Image.Image,
                        family: ModelFamily | None = None,
                        text_for_bbox: TextForBBox | None = None) -> list[BlockRequest]:
    """Step 2 requests. Also stores image/table crops on the blocks, and (hybrid)
    fills plain text blocks from the text layer instead of asking the model."""
    fam = _family(family)
    out = []
    for i, block in enumerate(blocks):
        block.crop_png = fam.block_crop_png(block, render)
        if text_for_bbox is not None and block.type in HYBRID_TYPES:
            text = text_for_bbox(block.bbox)
            if text and text.strip():
                block.content, block.source = text.strip(), "text_layer"
                continue
        request = fam.block_request(block, render)
        if request is not None:
            out.append(BlockRequest(i, request))
    return out


def engine_request(request: VLMRequest, family: ModelFamily | None = None) -> dict:
    """The request as `inference.LLM.generate` takes it: chat prompt text with one
    `<|image_pad|>` placeholder (the engine's processor expands it) and the image.
    Build its sampling with `SamplingParams(**request.sampling)`."""
    return {"prompt": _family(family).chat_prompt(request.prompt), "images": [request.image]}


def answers_for(block_requests: list[BlockRequest], outputs: list[str]) -> dict[int, str]:
    """block index -> answer, from requests and the client's outputs in the same order."""
    if len(outputs) != len(block_requests):
        raise ValueError(f"{len(outputs)} answers for {len(block_requests)} block requests")
    return {br.block_idx: out for br, out in zip(block_requests, outputs)}


def finish_page(blocks: list[LayoutBlock], answers: Mapping[int, str], page_idx: int,
                width_pt: float, height_pt: float, family: ModelFamily | None = None) -> PageResult:
    fam = _family(family)
    for i, answer in answers.items():
        fam.fill_block(blocks[i], answer)
    hybrid = any(b.source == "text_layer" for b in blocks)
    return PageResult(page_idx=page_idx, width_pt=width_pt, height_pt=height_pt,
                      blocks=fam.assemble(blocks, width_pt, height_pt),
                      source="hybrid" if hybrid else "vlm")


def convert_page(client: VLMClient, render: Image.Image, page_idx: int, width_pt: float,
                 height_pt: float, family: ModelFamily | None = None,
                 text_for_bbox: TextForBBox | None = None) -> PageResult:
    """One page through both steps; an error becomes the page's `error`, never a raise."""
    fam = _family(family)
    t0 = time.perf_counter()
    try:
        layout_answer = client.generate([make_layout_request(render, fam)])[0]
        t1 = time.perf_counter()
        blocks = blocks_from_layout(layout_answer, fam)
        breqs = make_block_requests(blocks, render, fam, text_for_bbox)
        outputs = client.generate([b.request for b in breqs]) if breqs else []
        page = finish_page(blocks, answers_for(breqs, outputs), page_idx, width_pt, height_pt, fam)
    except Exception as e:  # one bad page must not stop the document
        return PageResult(page_idx=page_idx, width_pt=width_pt, height_pt=height_pt, source="vlm",
                          error=f"page {page_idx + 1}: VLM {fam.name}: {type(e).__name__}: {e}")
    page.timings_s.update(vlm_layout=t1 - t0, vlm_blocks=time.perf_counter() - t1)
    return page
