"""Page rendering: one page to an RGB image at a chosen DPI, and a bounded
prefetcher that renders ahead of the OCR/VLM consumer.

Limits (decompression-bomb protection, with the worker's memory limit
covering what is left, e.g. inline images):
- the long side of the image is capped at `max_side_px` (3500 px) by
  lowering the scale; a render over `max_render_pixels` is refused;
- a page with an embedded image over `max_image_pixels` is refused before
  MuPDF decodes it (a few KB of Flate data can inflate to gigabytes).

Threads: MuPDF is not thread-safe and PyMuPDF holds the GIL while it renders
(measured: a Python thread gets ~10% of its idle speed during get_pixmap),
so one background thread does all MuPDF work on the document: it overlaps
rendering with inference that releases the GIL (onnxruntime, torch), while
parallelism across pages comes from the document worker processes. While a
prefetch runs, the caller must not touch the document itself; anything else
it needs from a page (the text layer) goes through `also`.

Memory: at most `window` rendered pages wait in the queue, plus one being
rendered and one held by the consumer, whatever the document's length.
"""
from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any, Callable, Iterable, Iterator

import pymupdf
from PIL import Image

from docpipe.ingest.ahead import ahead
from docpipe.ingest.errors import PdfError

MAX_SIDE_PX = 3500  # long side of a rendered page
MAX_RENDER_PIXELS = 100_000_000  # refuse larger renders (only reachable when max_side_px is raised)
MAX_IMAGE_PIXELS = 250_000_000  # embedded image (750 MB as RGB); a 600 dpi A1 scan is ~ 220 Mpx


def render_page(page: pymupdf.Page, dpi: int = 200, max_side_px: int | None = MAX_SIDE_PX,
                max_render_pixels: int = MAX_RENDER_PIXELS,
                max_image_pixels: int = MAX_IMAGE_PIXELS) -> Image.Image:
    """The page as an RGB image (rotation applied); PdfError names file and page when refused."""
    check_embedded_images(page, max_image_pixels)
    width_pt, height_pt = page.rect.width, page.rect.height
    scale = dpi / 72
    if max_side_px:
        scale = min(scale, max_side_px / max(width_pt, height_pt))
    if width_pt * scale * height_pt * scale > max_render_pixels:
        raise _page_error(page, f"rendering at {dpi} dpi needs {width_pt * scale:.0f} x {height_pt * scale:.0f}"
                                f" px, over the limit of {max_render_pixels / 1e6:g} Mpx")
    pix = page.get_pixmap(matrix=pymupdf.Matrix(scale, scale), colorspace=pymupdf.csRGB, alpha=False)
    image = Image.frombytes("RGB", (pix.width, pix.height), pix.samples_mv)
    del pix  # free MuPDF's copy before the caller holds ours
    if max_side_px and max(image.size) > max_side_px:  # a fractional page origin can round up by 1 px
        image = image.crop((0, 0, min(image.width, max_side_px), min(image.height, max_side_px)))
    return image


def check_embedded_images(page: pymupdf.Page, max_image_pixels: int) -> None:
    """Refuses a page that draws an image whose declared size is over the limit."""
    for info in page.get_images(full=True):
        width_px, height_px = info[2], info[3]
        if width_px * height_px > max_image_pixels:
            raise _page_error(page, f"embedded image of {width_px} x {height_px} px is over the limit of "
                                    f"{max_image_pixels / 1e6:g} Mpx (possible decompression bomb)")


@dataclass
class RenderedPage:
    page_idx: int  # 0-based index in the document
    image: Image.Image | None  # RGB; None when not wanted or when the page failed
    extra: Any = None  # what `also(page)` returned, computed on the render thread
    error: PdfError | None = None  # set when the page failed; the document goes on
    render_s: float = 0.0  # wall seconds spent on this page in the render thread


def prefetch_pages(doc: pymupdf.Document, page_indices: Iterable[int], dpi: int = 200,
                   max_side_px: int | None = MAX_SIDE_PX, window: int = 2,
                   also: Callable[[pymupdf.Page], Any] | None = None,
                   wants_image: Callable[[Any], bool] | None = None) -> Iterator[RenderedPage]:
    """The pages in order, rendered ahead by one background thread (ahead.py).

    `also(page)` runs on the render thread for each page (e.g. text-layer
    extraction); `wants_image(extra)` decides from its result whether the page
    is rendered at all (e.g. only pages without a usable text layer). A
    MemoryError in the thread is raised in the caller; any other failure of a
    page is reported on that page.
    """
    assert window >= 1, "window must be at least 1 page"
    return ahead((_render_one(doc, page_idx, dpi, max_side_px, also, wants_image) for page_idx in page_indices),
                 window, name="docpipe-render")


def _render_one(doc, page_idx, dpi, max_side_px, also, wants_image) -> RenderedPage:
    start_s = time.perf_counter()
    result = RenderedPage(page_idx, None)
    try:
        page = doc.load_page(page_idx)
        result.extra = also(page) if also else None
        if wants_image is None or wants_image(result.extra):
            result.image = render_page(page, dpi, max_side_px)
    except PdfError as e:
        result.error = e
    except MemoryError:
        raise
    except Exception as e:  # MuPDF errors in content streams, fonts, images
        result.error = PdfError(doc.name, page_idx + 1, f"cannot be rendered ({type(e).__name__}: {e})")
    result.render_s = time.perf_counter() - start_s
    return result


def _page_error(page: pymupdf.Page, reason: str) -> PdfError:
    return PdfError(page.parent.name, page.number + 1, reason)
