"""Hybrid mode: the PDF text layer stands in for VLM recognition of plain
text blocks (`vlm_page.make_block_requests(..., text_for_bbox=...)`).

Lifecycle: on the render thread, `read_text_layer(page)` decides whether
the page has a reliable text layer (not one that needs OCR: scans, unmapped
glyphs, outlined text, see `docpipe.text.scan_detect`) and keeps its
horizontal lines, in the page as displayed (the render's orientation). Then
`TextLayerLookup(lines, w, h)(bbox)` answers a layout block's box (page
fractions) with the text of the lines lying mostly inside it, rows top to
bottom and left to right, joined like paragraphs (hyphenation, CJK). It
answers None (ask the VLM) when the page has no reliable layer, when no line
lies in the box, or when the text found there reads as garbage.
"""
from __future__ import annotations

from dataclasses import dataclass

from docpipe.geometry import inside_share
from docpipe.text.joining import join_lines
from docpipe.text.lines import TextLine

INSIDE_SHARE = 0.6  # a line belongs to a block when this share of its box lies inside
ROW_OVERLAP = 0.5  # lines overlapping vertically by this share of the lower height share a row


@dataclass
class TextLayer:
    lines: list[TextLine]  # horizontal lines, PDF points of the page as displayed
    is_reliable: bool  # False when the page needs OCR: the lines must not be trusted
    read_s: float = 0.0  # seconds spent reading and judging the layer


def read_text_layer(page) -> TextLayer:
    """Run on the thread that owns the document (MuPDF is not thread-safe)."""
    import time

    from docpipe.text.layer import read_page_text
    from docpipe.text.scan_detect import needs_ocr

    t0 = time.perf_counter()
    if needs_ocr(page):
        return TextLayer([], False, time.perf_counter() - t0)
    lines = read_page_text(page).lines
    return TextLayer(lines, True, time.perf_counter() - t0)


def _rows(lines: list[TextLine]) -> list[str]:
    """Lines grouped into rows (top to bottom), each row's lines left to right."""
    rows: list[list[TextLine]] = []
    for ln in sorted(lines, key=lambda l: (l.bbox[1], l.bbox[0])):
        last = rows[-1][-1] if rows else None
        if last is not None:
            overlap = min(last.bbox[3], ln.bbox[3]) - max(last.bbox[1], ln.bbox[1])
            height = max(1e-6, min(last.bbox[3] - last.bbox[1], ln.bbox[3] - ln.bbox[1]))
            if overlap >= ROW_OVERLAP * height:
                rows[-1].append(ln)
                continue
        rows.append([ln])
    return [" ".join(l.text.strip() for l in sorted(row, key=lambda l: l.bbox[0])) for row in rows]


class TextLayerLookup:
    """`text_for_bbox` for one page (see module doc)."""

    def __init__(self, layer: TextLayer, width_pt: float, height_pt: float):
        self.layer = layer
        self.width_pt = width_pt
        self.height_pt = height_pt

    def __call__(self, bbox: tuple[float, float, float, float]) -> str | None:
        from docpipe.text.scan_detect import is_garbage

        if not self.layer.is_reliable:
            return None
        box = (bbox[0] * self.width_pt, bbox[1] * self.height_pt, bbox[2] * self.width_pt, bbox[3] * self.height_pt)
        inside = [ln for ln in self.layer.lines if inside_share(ln.bbox, box) >= INSIDE_SHARE]
        if not inside:
            return None
        text = join_lines(_rows(inside))
        return None if not text.strip() or is_garbage(text) else text
