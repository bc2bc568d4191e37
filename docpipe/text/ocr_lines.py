"""Raw OCR detections -> clean `TextLine`s, and the OCR-only page furniture
and table-grid finding that the shared layout (layout.py) cannot do from
lines alone.

Steps, in order (`to_lines`): quads in pixels -> axis-aligned boxes in PDF
points with a size estimate -> drop empty / low-confidence boxes -> merge
detector fragments of one visual line (the detector splits a line at wide
word gaps; a gutter between columns is far wider and is never bridged).

Then, on a page's lines:
- `split_furniture(lines, w, h)`: running header / footer bands and page
  numbers, found by geometry on one page (a scan has no cross-page repeats to
  lean on), plus bottom-of-column footnotes in a smaller size;
- `find_grids(lines)`: runs of rows with several aligned cells (tables), as
  `table` Blocks whose text is the cells in row order, so that layout never
  reads a table column by column.
"""
from __future__ import annotations

from dataclasses import dataclass

from docpipe.text.joining import is_cjk
from docpipe.text.lines import TextLine

# Detector box height per point of font size, measured on rendered text at
# 200 dpi (PP-OCR det, unclip 1.6): Latin lines (ascenders + descenders)
# ~1.33, CJK lines ~1.18.
_H_PER_PT_LATIN = 1.33
_H_PER_PT_CJK = 1.18
_FRAGMENT_GAP = 0.8  # max gap between fragments of one visual line, in box heights


@dataclass
class RawBox:
    """One detection as RapidOCR returns it."""

    quad_px: list  # 4 corner points [[x, y], ...] in image pixels
    text: str  # recognised text
    score: float  # recognition confidence, 0..1


def size_from_height(text: str, height_pt: float) -> float:
    cjk = sum(is_cjk(ch) for ch in text)
    ratio = _H_PER_PT_CJK if cjk * 2 >= len(text.replace(" ", "")) else _H_PER_PT_LATIN
    return height_pt / ratio


def to_lines(raw: list[RawBox], scale_pt_per_px: float, min_score: float = 0.0) -> list[TextLine]:
    lines = []
    for rb in raw:
        text = " ".join(rb.text.split())
        if not text or rb.score < min_score:
            continue
        xs = [p[0] * scale_pt_per_px for p in rb.quad_px]
        ys = [p[1] * scale_pt_per_px for p in rb.quad_px]
        bbox = (min(xs), min(ys), max(xs), max(ys))
        lines.append(TextLine(text=text, bbox=bbox, size_pt=size_from_height(text, bbox[3] - bbox[1]),
                              score=rb.score))
    return merge_fragments(lines)


def merge_fragments(lines: list[TextLine]) -> list[TextLine]:
    """Join boxes of one visual line: vertical overlap of most of the smaller
    box, horizontal gap under `_FRAGMENT_GAP` heights."""
    out: list[TextLine] = []
    for ln in sorted(lines, key=lambda ln: ln.bbox[0]):
        host = next((o for o in reversed(out) if _same_line(o, ln)), None)
        if host is None:
            out.append(TextLine(text=ln.text, bbox=ln.bbox, size_pt=ln.size_pt, score=ln.score))
            continue
        sep = "" if is_cjk(host.text[-1]) and is_cjk(ln.text[0]) else " "
        host.text += sep + ln.text
        x0, y0, x1, y1 = host.bbox
        host.bbox = (x0, min(y0, ln.bbox[1]), max(x1, ln.bbox[2]), max(y1, ln.bbox[3]))
        host.size_pt = max(host.size_pt, ln.size_pt)
        host.score = min(host.score, ln.score)
    return sorted(out, key=lambda ln: (ln.bbox[1], ln.bbox[0]))


def _same_line(a: TextLine, b: TextLine) -> bool:
    ha, hb = a.bbox[3] - a.bbox[1], b.bbox[3] - b.bbox[1]
    overlap = min(a.bbox[3], b.bbox[3]) - max(a.bbox[1], b.bbox[1])
    gap = b.bbox[0] - a.bbox[2]
    return overlap > 0.6 * min(ha, hb) and -0.5 * min(ha, hb) < gap < _FRAGMENT_GAP * max(ha, hb)
