"""layout_lines on hand-made TextLines (no PDF): the contract OCR relies on."""
from docpipe.text.headings import FontStats
from docpipe.text.joining import join_lines, list_item, starts_item
from docpipe.text.layout import layout_lines
from docpipe.text.lines import TextLine
from docpipe.text.reading_order import order

W, H = 600.0, 800.0


def line(text, x0, y0, x1=None, size=10.0, bold=False):
    x1 = x1 if x1 is not None else x0 + 5.0 * len(text)
    return TextLine(text=text, bbox=(x0, y0, x1, y0 + size * 1.2), size_pt=size, is_bold=bold)


def paragraph(words, x0, y0, width, n_lines, size=10.0):
    return [line(f"{words} {i}", x0, y0 + i * size * 1.25, x0 + width, size) for i in range(n_lines)]


def test_hyphenation_and_cjk_joins():
    assert join_lines(["an exam-", "ple of it"]) == "an example of it"
    assert join_lines(["well-", "Known"]) == "well- Known"  # capital: a real hyphen stays
    assert join_lines(["中文", "句子"]) == "中文句子"
    assert join_lines(["soft\xad", "hyphen"]) == "softhyphen"


def test_list_markers():
    assert starts_item("• first") and starts_item("2) second") and starts_item("a. third")
    assert not starts_item("-5 degrees") and not starts_item("1.5 million")
    assert list_item("• first") == "- first"
    assert list_item("2) second") == "2. second"


def test_paragraph_rejoins_lines_and_two_columns_read_in_order():
    left = paragraph("left", 50, 100, 230, 6)
    right = paragraph("right", 320, 100, 230, 6)
    blocks = layout_lines(right + left, W, H)  # input order must not matter
    texts = [b.text for b in blocks]
    assert len(blocks) == 2
    assert texts[0].startswith("left 0") and texts[0].endswith("left 5")
    assert texts[1].startswith("right 0")


def test_full_width_title_then_columns_then_full_width_footer_text():
    title = [line("A Title Across", 200, 40, 400, size=20)]
    cols = paragraph("L", 50, 100, 230, 4) + paragraph("R", 320, 100, 230, 4)
    tail = paragraph("tail", 50, 200, 500, 2)
    blocks = layout_lines(tail + cols + title, W, H)
    assert [b.text.split()[0] for b in blocks] == ["A", "L", "R", "tail"]
    assert blocks[0].type == "title" and blocks[0].level == 1


def test_heading_levels_follow_document_sizes():
    stats = FontStats()
    body = paragraph("body text line", 50, 300, 400, 30)
    h1 = line("Chapter", 50, 100, size=24)
    h2 = line("Section", 50, 150, size=16)
    h3 = line("Bold sub", 50, 200, bold=True)
    stats.add(body + [h1, h2, h3])
    blocks = layout_lines([h1, h2, h3] + body, W, H, heading_levels=stats.levels())
    levels = {b.text: b.level for b in blocks if b.type == "title"}
    assert levels == {"Chapter": 1, "Section": 2, "Bold sub": 3}


def test_list_items_become_one_list_block():
    lines = [line("Intro text:", 50, 100), line("• apples", 60, 115), line("• pears and", 60, 130),
             line("more pears", 70, 145), line("• plums", 60, 160)]
    blocks = layout_lines(lines, W, H)
    assert [b.type for b in blocks] == ["text", "list"]
    assert blocks[1].text.splitlines() == ["- apples", "- pears and more pears", "- plums"]


def test_rule_less_grid_becomes_table():
    rows = [("Year", "Count")] + [(str(2019 + i), str(100 + i)) for i in range(4)]
    lines = []
    for r, (a, b) in enumerate(rows):
        lines += [line(a, 100, 100 + 13 * r), line(b, 250, 100 + 13 * r)]
    blocks = layout_lines(lines, W, H)
    assert [b.type for b in blocks] == ["table"]
    assert blocks[0].markdown_table.splitlines()[2] == "| 2019 | 100 |"


def test_order_is_a_permutation_with_many_boxes():
    boxes = [(x * 10.0, y * 10.0, x * 10.0 + 8, y * 10.0 + 8) for y in range(20) for x in range(10)]
    got = order(boxes, 200, 200)  # above the graph limit: XY-cut fallback
    assert sorted(got) == list(range(len(boxes)))
    assert got[:10] == list(range(10))  # first row left to right


def test_list_continued_in_the_next_column_keeps_its_depth_and_ends_at_the_margin():
    lines = [
        line("Intro text of the left column that runs long.", 50, 100, 250),
        line("• Panels of 2.4 kW peak", 70, 120, 240),
        line("• A 10 kWh battery bank", 330, 100, 520),  # the list goes on at the top of the right column
        line("• A cellular modem that", 330, 120, 500),
        line("reports hourly readings", 342, 132, 480),  # hanging indent: same item
        line("The controller divides loads into classes.", 310, 150, 540),  # back at the margin: new paragraph
    ]
    blocks = layout_lines(lines, 600, 800)
    lists = [b for b in blocks if b.type == "list"]
    assert len(lists) == 1
    assert lists[0].text.splitlines() == ["- Panels of 2.4 kW peak", "- A 10 kWh battery bank",
                                          "- A cellular modem that reports hourly readings"]
    assert any(b.type == "text" and b.text.startswith("The controller") for b in blocks)
