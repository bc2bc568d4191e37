"""The `pipeline` backend's page loop: born-digital pages from their text
layer, pages without a usable text layer through OCR, both through one
layout analysis (layout.layout_lines).

    extract_pages(doc, page_indices, opts) -> Iterator[PageResult]

Lifecycle:
  1. first pass (cheap, before anything is yielded): text lines of every
     selected page (an even sample of `_MAX_STAT_PAGES` on long documents)
     feed the document's font statistics (heading levels) and furniture
     statistics (running headers/footers). Lines read here are kept only
     for the sampled pages and handed to pass 2, so memory stays bounded.
  2. per page, streamed: lines (text layer or OCR) -> furniture lines out ->
     tables (gated finder) and images (PNG crops) -> layout_lines with those
     as extra blocks -> PageResult. A page that raises yields
     PageResult(error="page N: ...") and the loop goes on.
"""
from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field, replace

import pymupdf

from docpipe.config import ConvertOptions
from docpipe.geometry import area, inside_share
from docpipe.schema import Block, PageResult
from docpipe.text.furniture import Furniture, FurnitureStats
from docpipe.text.headings import FontStats, HeadingLevels
from docpipe.text.images import CropRenderer, find_image_boxes, image_block
from docpipe.text.layer import PageText, read_page_text
from docpipe.text.layout import layout_lines
from docpipe.text.lines import TextLine
from docpipe.text.ocr_lines import page_blocks
from docpipe.text.tables import find_table_blocks

# Crops of pictures: rendering and PNG encoding are most of this backend's time;
# 144 dpi halves it against 200 dpi. opts.extra["image_dpi"] overrides.
IMAGE_DPI_CAP = 144
_MAX_STAT_PAGES = 200  # first-pass sample size on long documents
_INSIDE_SHARE = 0.6  # a line whose box lies this much inside a table/image belongs to it


@dataclass
class DocContext:
    levels: HeadingLevels  # heading sizes of the document
    furniture: Furniture  # running header/footer keys
    cache: dict[int, PageText] = field(default_factory=dict)  # page -> lines from pass 1, popped in pass 2


def extract_pages(doc, page_indices: list[int], opts: ConvertOptions) -> Iterator[PageResult]:
    ctx = first_pass(doc, page_indices)
    for idx in page_indices:
        t0 = time.perf_counter()
        try:
            result = extract_page(doc[idx], idx, ctx, opts)
        except Exception as exc:  # one bad page never stops the document
            ctx.cache.pop(idx, None)
            result = PageResult(page_idx=idx, width_pt=0.0, height_pt=0.0, source="none",
                                error=f"page {idx + 1}: {type(exc).__name__}: {exc}")
        result.timings_s["page"] = time.perf_counter() - t0
        yield result


def first_pass(doc, page_indices: list[int]) -> DocContext:
    step = max(1, -(-len(page_indices) // _MAX_STAT_PAGES))
    fonts, furn = FontStats(), FurnitureStats()
    cache: dict[int, PageText] = {}
    for idx in page_indices[::step]:
        try:
            page = doc[idx]
            text = read_page_text(page)
        except Exception:  # reported by pass 2 on that page
            continue
        cache[idx] = text
        fonts.add(text.lines)
        furn.add(text.lines, page.rect.height)
    return DocContext(levels=fonts.levels(), furniture=furn.freeze(), cache=cache)


def extract_page(page, idx: int, ctx: DocContext, opts: ConvertOptions) -> PageResult:
    w, h = page.rect.width, page.rect.height
    res = PageResult(page_idx=idx, width_pt=w, height_pt=h)
    t = time.perf_counter()
    text = ctx.cache.pop(idx, None) or read_page_text(page)
    lines, rotated = text.lines, text.rotated
    if _use_ocr(page, opts):
        lines, rotated, res.source = ocr_engine().read_page(page, opts.dpi), [], "ocr"
        if page.rotation:  # OCR answers in the unrotated page; layout reads the displayed one
            rot = page.rotation_matrix
            lines = [replace(ln, bbox=tuple(pymupdf.Rect(ln.bbox) * rot)) for ln in lines]
    res.timings_s["text"] = time.perf_counter() - t
    if res.source == "ocr":
        # Scans get the OCR layout (line spacing measured on the page, furniture by
        # geometry, tables read row by row): 0.05 NED on the dev scans against 0.14
        # through layout_lines, whose thresholds assume exact text-layer font sizes.
        t = time.perf_counter()
        res.blocks = page_blocks(lines, w, h)
        res.timings_s["layout"] = time.perf_counter() - t
        return _derotate(page, res)

    t = time.perf_counter()
    extra, body = _furniture(lines, rotated, ctx.furniture, h, res.source)
    if res.source == "text_layer":
        tables = find_table_blocks(page, body)
        extra += tables
        body = [ln for ln in body if not any(_inside(ln.bbox, b.bbox) for b in tables)]
    res.timings_s["tables"] = time.perf_counter() - t

    t = time.perf_counter()
    renderer = CropRenderer(page, int(opts.extra.get("image_dpi", min(opts.dpi, IMAGE_DPI_CAP))))
    for box in find_image_boxes(page, body):
        if area(box) > 0.9 * w * h and body:
            continue  # a full-page background (scan under a text layer, slide backdrop)
        extra.append(image_block(renderer, box))
        body = [ln for ln in body if not _inside(ln.bbox, box)]
    res.timings_s["images"] = time.perf_counter() - t

    t = time.perf_counter()
    res.blocks = layout_lines(body, w, h, ctx.levels, extra_blocks=extra, source=res.source)
    res.timings_s["layout"] = time.perf_counter() - t
    return _derotate(page, res)


def _derotate(page, res: PageResult) -> PageResult:
    """Schema: boxes in the unrotated page."""
    derot = page.derotation_matrix if page.rotation else None
    for b in res.blocks:
        b.source = res.source
        if derot is not None:
            b.bbox = tuple(pymupdf.Rect(b.bbox) * derot)
    if derot is not None:
        res.width_pt, res.height_pt = page.mediabox.width, page.mediabox.height
    return res


def _furniture(lines: list[TextLine], rotated: list[TextLine], furniture: Furniture,
               page_height: float, source: str) -> tuple[list[Block], list[TextLine]]:
    """Split off header/footer/page-number lines (and rotated margin text)."""
    blocks = [Block(type="aside_text", bbox=ln.bbox, text=ln.text, source=source) for ln in rotated]
    body = []
    for ln in lines:
        kind = furniture.kind(ln, page_height)
        if kind:
            blocks.append(Block(type=kind, bbox=ln.bbox, text=ln.text, source=source, score=ln.score))
        else:
            body.append(ln)
    return blocks, body


def _inside(inner, outer) -> bool:
    return inside_share(inner, outer) >= _INSIDE_SHARE


# OCR lives in docpipe.text.ocr (optional: rapidocr/onnxruntime); imported lazily
# so the text-layer path works without it. One engine per process.
_OCR_ENGINE = None


def _use_ocr(page, opts: ConvertOptions) -> bool:
    if opts.ocr == "never":
        return False
    if opts.ocr == "always":
        return True
    try:
        from docpipe.text.ocr import needs_ocr
    except ImportError:
        return False  # no OCR module: the text layer (maybe empty) is all we have
    return needs_ocr(page)


def ocr_engine():
    global _OCR_ENGINE
    if _OCR_ENGINE is None:
        try:
            from docpipe.text.ocr import OcrEngine
        except ImportError as exc:
            raise RuntimeError(f"OCR requested but docpipe.text.ocr is unavailable: {exc}") from exc
        _OCR_ENGINE = OcrEngine()
    return _OCR_ENGINE
