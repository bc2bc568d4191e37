"""render_page sizes and limits; the prefetcher's order, bound and errors."""
from __future__ import annotations

import threading
import time

import pymupdf
import pytest
from pdf_factory import image_page_pdf, set_media_box, write_pages

from docpipe.ingest.errors import PdfError
from docpipe.ingest.render import check_embedded_images, prefetch_pages, render_page


def test_size_follows_dpi(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "a.pdf", [(612, 792)]))
    assert render_page(doc[0], dpi=200).size == (1700, 2200)
    image = render_page(doc[0], dpi=72)
    assert image.size == (612, 792) and image.mode == "RGB"
    assert image.getpixel((5, 5)) == (255, 255, 255)  # white paper, no alpha


def test_long_side_is_capped(tmp_path):
    path = write_pages(tmp_path / "big.pdf", [(612, 792)])
    set_media_box(path, 0, "[0.3 0.7 7200.6 3600.2]")  # fractional origin: rounding must not break the cap
    image = render_page(pymupdf.open(path)[0], dpi=200)
    assert image.width == 3500 and abs(image.height - 1750) <= 1
    assert max(render_page(pymupdf.open(path)[0], dpi=200, max_side_px=1000).size) == 1000


def test_rotation_is_applied(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "r.pdf", [(612, 792)]))
    doc[0].set_rotation(90)
    assert render_page(doc[0], dpi=72).size == (792, 612)


def test_render_over_the_pixel_limit_is_refused(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "p.pdf", [(1440, 1440)]))
    with pytest.raises(PdfError, match="page 1: rendering at 300 dpi needs 6000 x 6000 px"):
        render_page(doc[0], dpi=300, max_side_px=None, max_render_pixels=30_000_000)


def test_embedded_image_bomb_is_refused_before_decoding(tmp_path):
    path = image_page_pdf(tmp_path / "bomb.pdf", num_pages=3, bomb_page_idx=1, bomb_px=2000)
    doc = pymupdf.open(path)
    check_embedded_images(doc[0], max_image_pixels=1_000_000)  # text-only page passes
    with pytest.raises(PdfError) as info:
        render_page(doc[1], max_image_pixels=1_000_000)
    assert info.value.page == 2 and path in str(info.value) and "2000 x 2000 px" in info.value.reason
    assert render_page(doc[1], dpi=72, max_image_pixels=10_000_000).getpixel((150, 150)) == (0, 0, 0)


def test_prefetch_yields_pages_in_order_with_extras(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "d.pdf", [(300, 400)] * 6))
    pages = list(prefetch_pages(doc, [0, 2, 5], dpi=72, also=lambda page: page.get_text().strip()))
    assert [(p.page_idx, p.extra, p.image.size) for p in pages] == [
        (0, "page 1", (300, 400)), (2, "page 3", (300, 400)), (5, "page 6", (300, 400))]
    assert all(p.error is None and p.render_s > 0 for p in pages)


def test_prefetch_stays_within_its_window(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "d.pdf", [(100, 100)] * 12))
    started = []  # page indices the render thread has begun, in order
    ahead = []
    for consumed, page in enumerate(prefetch_pages(doc, range(12), dpi=36, window=2,
                                                   also=lambda p: started.append(p.number))):
        time.sleep(0.02)  # a slow consumer: the renderer must wait for it
        ahead.append(len(started) - (consumed + 1))
    assert max(ahead) <= 3  # window (2) queued + 1 in the renderer's hands
    assert max(ahead) >= 1  # and it does render ahead


def test_prefetch_reports_a_bad_page_and_goes_on(tmp_path):
    path = image_page_pdf(tmp_path / "bomb.pdf", num_pages=3, bomb_page_idx=1, bomb_px=20000)
    doc = pymupdf.open(path)
    pages = list(prefetch_pages(doc, range(3), dpi=72))
    assert [p.error is None for p in pages] == [True, False, True]
    assert pages[1].image is None and pages[1].error.page == 2 and "decompression bomb" in pages[1].error.reason


def test_prefetch_renders_only_wanted_pages(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "d.pdf", [(100, 100)] * 4))
    pages = list(prefetch_pages(doc, range(4), dpi=36, also=lambda p: p.number,
                                wants_image=lambda number: number % 2 == 1))
    assert [p.image is not None for p in pages] == [False, True, False, True]


def test_consumer_stopping_early_ends_the_render_thread(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "d.pdf", [(100, 100)] * 50))
    before = threading.active_count()
    pages = prefetch_pages(doc, range(50), dpi=36, window=1)
    next(pages)
    pages.close()
    assert threading.active_count() == before


def test_memory_error_in_the_renderer_reaches_the_consumer(tmp_path):
    doc = pymupdf.open(write_pages(tmp_path / "d.pdf", [(100, 100)] * 3))

    def explode(page):
        if page.number == 1:
            raise MemoryError("simulated")

    pages = prefetch_pages(doc, range(3), dpi=36, also=explode)
    assert next(pages).page_idx == 0
    with pytest.raises(MemoryError, match="simulated"):
        next(pages)
