"""OCR of pages without a usable text layer, with RapidOCR (PP-OCR det + cls +
rec on onnxruntime, CPU; the models ship in the `rapidocr` wheel).

Lifecycle: one `OcrEngine` per worker process; RapidOCR loads on the first
`read_page` / `read_image` (about a second) and is reused after. Calls are
serialised by a lock: onnxruntime already uses every core for one page, so a
second concurrent page would only thrash.

Contract: `read_page(page)` renders the page as displayed (rotation applied),
reads it and returns `TextLine`s in PDF points of the unrotated page, top-left
origin, one per visual line (detector fragments merged, see ocr_lines.py),
`size_pt` estimated from the box height, `score` = recognition confidence.
Which pages need OCR is `needs_ocr` (scan_detect.py, re-exported here).
"""
from __future__ import annotations

import threading
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from docpipe.text import ocr_lines
from docpipe.text.lines import TextLine
from docpipe.text.scan_detect import needs_ocr

if TYPE_CHECKING:
    import pymupdf
    from PIL import Image

__all__ = ["OcrEngine", "OcrSettings", "needs_ocr"]

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
        raw = [ocr_lines.RawBox(quad_px=np.asarray(b, dtype=float).tolist(), text=t, score=float(s))
               for b, t, s in zip(res.boxes, res.txts, res.scores)]
        return ocr_lines.to_lines(raw, scale_pt_per_px)
