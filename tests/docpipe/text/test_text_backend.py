"""extract_pages on small PDFs made here with PyMuPDF (no corpus needed)."""
import importlib.util

import pymupdf
import pytest

from docpipe.config import ConvertOptions
from docpipe.text import backend
from docpipe.text.backend import extract_pages
from docpipe.writers.markdown import render_markdown

BODY = "The quick brown fox jumps over the lazy dog while the cat watches the bird"


def _page(doc, n, title=None):
    page = doc.new_page(width=595, height=842)
    page.insert_text((72, 40), "ACME Quarterly Report", fontsize=9)  # running header
    page.insert_text((290, 815), str(n), fontsize=9)  # page number
    y = 100
    if title:
        page.insert_text((72, y), title, fontsize=20, fontname="hebo")
        y += 40
    page.insert_text((72, y), f"Section {n}", fontsize=14, fontname="hebo")
    y += 30
    for i in range(4):
        page.insert_text((72, y + 13 * i), f"{BODY} {n}-{i}", fontsize=10)
    return page, y + 70


def _ruled_table(page, x0, y0, rows, col_w=90, row_h=18, span_first=False):
    ncol = len(rows[-1])
    for r in range(len(rows) + 1):
        page.draw_line((x0, y0 + r * row_h), (x0 + ncol * col_w, y0 + r * row_h))
    for c in range(ncol + 1):
        top = y0 + (row_h if span_first and 0 < c < ncol else 0)
        page.draw_line((x0 + c * col_w, top), (x0 + c * col_w, y0 + len(rows) * row_h))
    for r, row in enumerate(rows):
        width = col_w * ncol / len(row)
        for c, text in enumerate(row):
            page.insert_text((x0 + c * width + 4, y0 + r * row_h + 13), text, fontsize=10)


@pytest.fixture(scope="module")
def doc():
    d = pymupdf.open()
    page, y = _page(d, 1, title="Annual Findings")
    page.insert_text((72, y), "A sentence that ends with a hyphen-", fontsize=10)
    page.insert_text((72, y + 13), "ated word here.", fontsize=10)
    page, y = _page(d, 2)
    for i, item in enumerate(["apples", "pears", "plums"]):
        page.insert_text((80, y + 14 * i), f"\u2022 {item}", fontsize=10)
    _ruled_table(page, 72, y + 80, [["Name", "Qty", "Price"], ["bolt", "4", "1.50"], ["nut", "9", "0.20"]])
    page, y = _page(d, 3)
    _ruled_table(page, 72, y, [["Merged head"], ["a1", "b1"], ["a2", "b2"], ["a3", "b3"]], span_first=True)
    # Two columns: the left one must be read entirely before the right one.
    for i in range(5):
        page.insert_text((72, y + 120 + 13 * i), f"left column line {i} goes on", fontsize=10)
        page.insert_text((320, y + 120 + 13 * i), f"right column line {i} goes on", fontsize=10)
    pix = pymupdf.Pixmap(pymupdf.csRGB, pymupdf.IRect(0, 0, 40, 30), False)
    pix.clear_with(120)
    page.insert_image(pymupdf.Rect(72, 600, 272, 750), pixmap=pix)
    yield d
    d.close()


@pytest.fixture(scope="module")
def pages(doc):
    return list(extract_pages(doc, [0, 1, 2], ConvertOptions(ocr="never")))


def test_streams_one_result_per_page_with_timings(pages):
    assert [p.page_idx for p in pages] == [0, 1, 2]
    assert all(p.ok and p.source == "text_layer" and "layout" in p.timings_s for p in pages)


def test_heading_levels_from_font_sizes(pages):
    titles = {b.text: b.level for p in pages for b in p.blocks if b.type == "title"}
    assert titles["Annual Findings"] == 1
    assert titles["Section 1"] == titles["Section 3"] == 2


def test_paragraph_rejoined_and_dehyphenated(pages):
    texts = [b.text for b in pages[0].blocks if b.type == "text"]
    (para,) = [t for t in texts if t.startswith("The quick")]
    assert para.count("The quick") == 4 and para.endswith("the bird 1-3")
    assert any("hyphenated word here." in t for t in texts)


def test_running_header_and_page_number_are_furniture(pages):
    for p in pages:
        kinds = {b.text: b.type for b in p.blocks}
        assert kinds["ACME Quarterly Report"] == "header"
        assert kinds[str(p.page_idx + 1)] == "page_number"
    md = render_markdown(pages)
    assert "ACME" not in md and "\n2\n" not in md


def test_bullets_become_a_markdown_list(pages):
    lists = [b for b in pages[1].blocks if b.type == "list"]
    assert len(lists) == 1 and lists[0].text.splitlines() == ["- apples", "- pears", "- plums"]


def test_ruled_table_as_markdown_and_html(pages):
    (table,) = [b for b in pages[1].blocks if b.type == "table"]
    assert table.markdown_table.splitlines()[0] == "| Name | Qty | Price |"
    assert "| bolt | 4 | 1.50 |" in table.markdown_table
    assert table.html.startswith("<table>") and "<td>nut</td>" in table.html


def test_spanning_table_is_html_only(pages):
    (table,) = [b for b in pages[2].blocks if b.type == "table"]
    assert table.markdown_table == ""
    assert '<td colspan="2">Merged head</td>' in table.html
    assert "<td>a3</td><td>b3</td>" in table.html


def test_two_columns_in_reading_order(pages):
    md = render_markdown(pages[2:])
    left_last = md.index("left column line 4")
    assert left_last < md.index("right column line 0")


def test_image_block_carries_png(pages):
    (img,) = [b for b in pages[2].blocks if b.type == "image"]
    assert img.image[:8] == b"\x89PNG\r\n\x1a\n"
    assert abs(img.bbox[0] - 72) < 2 and abs(img.bbox[3] - 750) < 2


def test_failing_page_reports_error_and_loop_goes_on(doc, monkeypatch):
    real = backend.extract_page

    def flaky(page, idx, ctx, opts):
        if idx == 1:
            raise ValueError("broken content stream")
        return real(page, idx, ctx, opts)

    monkeypatch.setattr(backend, "extract_page", flaky)
    got = list(extract_pages(doc, [0, 1, 2], ConvertOptions(ocr="never")))
    assert [p.ok for p in got] == [True, False, True]
    assert got[1].error.startswith("page 2: ValueError")


@pytest.mark.skipif(importlib.util.find_spec("docpipe.text.ocr") is None,
                    reason="docpipe.text.ocr (the OCR module) is not in this checkout")
def test_ocr_lines_go_through_the_same_layout(monkeypatch):
    from docpipe.text.lines import TextLine

    class FakeEngine:
        def read_page(self, page, dpi):
            return [TextLine("Scanned right", (320, 100, 500, 112), 10.0),
                    TextLine("Scanned left", (60, 100, 240, 112), 10.0)]

    monkeypatch.setattr(backend, "_OCR_ENGINE", FakeEngine())
    d = pymupdf.open()
    d.new_page()
    (res,) = extract_pages(d, [0], ConvertOptions(ocr="always"))
    assert res.source == "ocr"
    assert [(b.text, b.source) for b in res.blocks] == [("Scanned left", "ocr"), ("Scanned right", "ocr")]
