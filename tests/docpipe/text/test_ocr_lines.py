"""OCR line cleanup and page layout on hand-made lines (no OCR run)."""
from docpipe.text.lines import TextLine
from docpipe.text.ocr import RawBox, to_lines
from docpipe.text.ocr_lines import join_text, page_blocks

W, H = 600.0, 800.0


def line(text, x0, y0, x1, h=12.0):
    return TextLine(text=text, bbox=(x0, y0, x1, y0 + h), size_pt=h / 1.33, score=0.99)


def body_text(blocks):
    return [b.text for b in blocks if b.type not in ("header", "footer", "page_number")]


def test_fragments_of_one_line_merge_and_columns_stay_apart():
    quad = lambda x0, x1: [[x0, 100], [x1, 100], [x1, 120], [x0, 120]]  # noqa: E731
    raw = [RawBox(quad(10, 200), "left column", 0.9), RawBox(quad(205, 300), "continues", 0.95),
           RawBox(quad(400, 600), "right column", 0.9)]
    lines = to_lines(raw, 0.5)
    assert [ln.text for ln in lines] == ["left column continues", "right column"]
    assert lines[0].bbox == (5.0, 50.0, 150.0, 60.0) and lines[0].score == 0.9


def test_join_text_cjk_and_hyphens():
    assert join_text(["中文段落的第一", "行和第二行"]) == "中文段落的第一行和第二行"
    assert join_text(["the ana-", "lytes of interest"]) == "the analytes of interest"
    assert join_text(["Om Al-", "Haymann sites"]) == "Om Al- Haymann sites"


def test_two_columns_read_column_by_column_without_furniture():
    lines = [line("Running Header Of The Journal", 40, 20, 300)]
    for k in range(12):
        y = 100 + 15 * k
        lines.append(line(f"left column line number {k} of text that runs on", 40, y, 290))
        lines.append(line(f"right column line number {k} of text that runs on", 310, y, 560))
    lines.append(line("17", 290, 770, 302))
    blocks = page_blocks(lines, W, H)
    text = body_text(blocks)
    assert len(text) == 2, text
    assert text[0].startswith("left column line number 0") and text[0].endswith("11 of text that runs on")
    assert text[1].startswith("right column")
    kinds = {b.text: b.type for b in blocks}
    assert kinds["17"] == "page_number" and kinds["Running Header Of The Journal"] == "header"


def test_indent_opens_a_paragraph():
    lines = [line("first paragraph opens here and runs to the right edge", 40, 100, 400),
             line("ending here.", 40, 115, 120),
             line("second paragraph opens with an indent and runs far", 60, 130, 400),
             line("to its end.", 40, 145, 110)]
    assert body_text(page_blocks(lines, W, H)) == [
        "first paragraph opens here and runs to the right edge ending here.",
        "second paragraph opens with an indent and runs far to its end."]


def test_table_cells_read_row_by_row():
    lines = [line("A paragraph above the table that is long enough to be text.", 40, 80, 500)]
    rows = [("Name", "Mass", "Size"), ("NAP", "68.3", "19.7"), ("ACY", "61.5", "5.6"), ("ACE", "65.3", "14.4")]
    for r, cells in enumerate(rows):
        for c, cell in enumerate(cells):
            x = 40 + 70 * c
            lines.append(line(cell, x, 110 + 14 * r, x + 30))
    text = " ".join(body_text(page_blocks(lines, W, H)))
    assert "Name Mass Size NAP 68.3 19.7 ACY 61.5 5.6 ACE 65.3 14.4" in text, text
