"""OCR of a synthetic scanned page: lines in PDF points, columns in order."""
import pymupdf
import pytest
from rapidfuzz import fuzz

from docpipe.text.ocr import OcrEngine, needs_ocr
from docpipe.text.ocr_lines import page_blocks

LEFT = ["Rivers carry water", "from the mountains", "down to the sea."]
RIGHT = ["Winter brings snow", "to the northern", "valleys each year."]


@pytest.fixture(scope="module")
def scanned_page():
    """Two columns of text rendered to pixels; the new page holds only the image."""
    src = pymupdf.open()
    page = src.new_page(width=360, height=150)
    for col, x in ((LEFT, 20), (RIGHT, 200)):
        for k, text in enumerate(col):
            page.insert_text((x, 40 + 16 * k), text, fontsize=12)
    pix = page.get_pixmap(dpi=150)
    doc = pymupdf.open()
    scan = doc.new_page(width=360, height=150)
    scan.insert_image(scan.rect, pixmap=pix)
    return doc, scan


def test_scanned_two_columns_read_in_order(scanned_page):
    _, page = scanned_page
    assert needs_ocr(page)
    lines = OcrEngine().read_page(page, dpi=150)
    assert lines, "no text recognised"
    for ln in lines:  # PDF points of this page, not pixels
        x0, y0, x1, y1 = ln.bbox
        assert 0 <= x0 < x1 <= 360 and 0 <= y0 < y1 <= 150
        assert 8 < ln.size_pt < 16  # rendered at 12 pt
        assert 0.5 <= ln.score <= 1.0
    text = "\n".join(b.text for b in page_blocks(lines, 360, 150))
    left, right = " ".join(LEFT), " ".join(RIGHT)
    assert fuzz.partial_ratio(left, text) > 85 and fuzz.partial_ratio(right, text) > 85, text
    assert text.find("Rivers") < text.find("mountains") < text.find("Winter") < text.find("northern"), text
