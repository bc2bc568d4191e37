"""OCR of pages without a usable text layer, with RapidOCR (PP-OCR det + cls +
rec on onnxruntime, CPU; the models ship in the `rapidocr` wheel).

Lifecycle: one `OcrEngine` per worker process; RapidOCR loads on the first
`read_page` / `read_image` (about a second) and is reused after. Calls are
serialised by a lock: onnxruntime already uses every core for one page, so a
second concurrent page would only thrash.

Contract: `read_page(page)` renders the page as displayed (rotation applied),
reads it and returns `TextLine`s in PDF points of the unrotated page, top-left
origin, one per visual line (detector fragments of one line merged; a
column gutter is far wider than a word gap and is never bridged),
`size_pt` estimated from the box height, `score` = recognition confidence.
Which pages need OCR is `needs_ocr` (scan_detect.py, re-exported here);
their layout is ocr_lines.page_blocks.
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from docpipe.text.lines import TextLine
from docpipe.text.joining import is_cjk
from docpipe.text.scan_detect import needs_ocr

if TYPE_CHECKING:
    import pymupdf
    from PIL import Image

__all__ = ["OcrEngine", "OcrSettings", "RawBox", "needs_ocr", "to_lines"]

MAX_SIDE_PX = 3500  # renders are capped here: larger gains nothing and costs memory


@dataclass
class OcrSettings:
    """RapidOCR knobs (names as in rapidocr's config.yaml); defaults measured on
    the dev corpus's scanned pages (see the module docstring of ocr_lines)."""

    max_side_px: int = 2000  # RapidOCR downsizes larger inputs to this long side before det
    det_limit_side_px: int = 736  # det input: short side at least this (limit_type "min")
    use_cls: bool = False  # 180-degree line classifier; scans here are upright
    text_score: float = 0.5  # drop recognised lines below this confidence
    extra: dict = field(default_factory=dict)  # further "Section.key" -> value overrides

    def params(self) -> dict:
        p = {
            "Global.log_level": "warning",
            "Global.max_side_len": self.max_side_px,
            "Global.use_cls": self.use_cls,
            "Global.text_score": self.text_score,
            "Det.limit_side_len": self.det_limit_side_px,
        }
        p.update(self.extra)
        return p


class OcrEngine:
    def __init__(self, settings: OcrSettings | None = None):
        self.settings = settings or OcrSettings()
        self._ocr = None  # rapidocr.RapidOCR, created on first use
        self._lock = threading.Lock()

    def _engine(self):
        if self._ocr is None:
            try:
                from rapidocr import RapidOCR
            except ImportError as e:  # optional at import time, required when OCR runs
                raise RuntimeError("OCR needs the 'rapidocr' and 'onnxruntime' packages") from e
            self._ocr = RapidOCR(params=self.settings.params())
        return self._ocr

    def read_page(self, page: "pymupdf.Page", dpi: int = 200) -> list[TextLine]:
        import pymupdf

        zoom = dpi / 72.0
        long_pt = max(page.rect.width, page.rect.height)
        zoom = min(zoom, MAX_SIDE_PX / long_pt)
        pix = page.get_pixmap(matrix=pymupdf.Matrix(zoom, zoom), alpha=False,
                              colorspace=pymupdf.csRGB)
        rgb = np.frombuffer(pix.samples, np.uint8).reshape(pix.height, pix.width, 3)
        lines = self._read_rgb(rgb, 1.0 / zoom)
        if page.rotation % 360:
            # Pixels follow the displayed (rotated) page; the contract is unrotated points.
            m = page.derotation_matrix
            for ln in lines:
                r = pymupdf.Rect(ln.bbox) * m
                ln.bbox = (r.x0, r.y0, r.x1, r.y1)
        return lines

    def read_image(self, image: "Image.Image", scale_pt_per_px: float) -> list[TextLine]:
        return self._read_rgb(np.asarray(image.convert("RGB")), scale_pt_per_px)

    def _read_rgb(self, rgb: np.ndarray, scale_pt_per_px: float) -> list[TextLine]:
        bgr = np.ascontiguousarray(rgb[:, :, ::-1])  # RapidOCR takes arrays as BGR
        with self._lock:
            res = self._engine()(bgr)
        if res.boxes is None or not res.txts:
            return []
        raw = [RawBox(quad_px=np.asarray(b, dtype=float).tolist(), text=t, score=float(s))
               for b, t, s in zip(res.boxes, res.txts, res.scores)]
        return to_lines(raw, scale_pt_per_px)


# Detector box height per point of font size, measured on rendered text at
# 200 dpi (PP-OCR det, unclip 1.6): Latin lines (ascenders + descenders)
# ~1.33, CJK lines ~1.18.
_H_PER_PT_LATIN = 1.33
_H_PER_PT_CJK = 1.18
# Max gap between fragments of one visual line, in box heights: word gaps
# are ~0.3; table cells of CJK text may sit closer than a height apart.
_FRAGMENT_GAP = 0.6


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
    return overlap > 0.6 * min(ha, hb) and -0.5 * min(ha, hb) < gap < _FRAGMENT_GAP * min(ha, hb)
