from docpipe.schema import Block, PageResult
from docpipe.writers.content_list import build_content_list


def _page(blocks, idx=0, error=""):
    return PageResult(page_idx=idx, width_pt=200.0, height_pt=400.0, blocks=blocks, error=error)


def test_bbox_scaled_to_thousandths_and_clamped():
    page = _page([Block("text", (20.0, 40.0, 100.0, 420.0), text="hi")])
    (entry,) = build_content_list([page])
    assert entry == {"type": "text", "bbox": [100, 100, 500, 1000], "page_idx": 0, "text": "hi"}


def test_title_level_table_image_equation_code_list_furniture():
    blocks = [
        Block("title", (0, 0, 10, 10), text="Intro", level=2),
        Block("table", (0, 0, 10, 10), html="<table><tr><td>1</td></tr></table>",
              img_path="images/ab.png", captions=["Table 1"], footnotes=["note"]),
        Block("image", (0, 0, 10, 10), img_path="images/cd.png", captions=["Figure 1"]),
        Block("equation", (0, 0, 10, 10), text="E=mc^2"),
        Block("code", (0, 0, 10, 10), text="print(1)", captions=["Listing 1"]),
        Block("list", (0, 0, 10, 10), text="- a\n- b\n"),
        Block("page_number", (0, 0, 10, 10), text="3"),
        Block("header", (0, 0, 10, 10), text="Running head"),
    ]
    entries = build_content_list([_page(blocks, idx=4)])
    assert [e["type"] for e in entries] == ["text", "table", "image", "equation", "code", "list",
                                            "page_number", "header"]
    assert all(e["page_idx"] == 4 for e in entries)
    title, table, image, eq, code, lst, num, head = entries
    assert title["text_level"] == 2 and title["text"] == "Intro"
    assert table["table_body"].startswith("<table>") and table["table_caption"] == ["Table 1"]
    assert table["table_footnote"] == ["note"] and table["img_path"] == "images/ab.png"
    assert image["image_caption"] == ["Figure 1"] and image["image_footnote"] == []
    assert eq["text_format"] == "latex" and eq["text"] == "E=mc^2"
    assert code["code_body"] == "print(1)" and code["sub_type"] == "code"
    assert lst["list_items"] == ["- a", "- b"]
    assert num["text"] == "3" and head["text"] == "Running head"


def test_failed_pages_contribute_nothing():
    ok = _page([Block("text", (0, 0, 1, 1), text="kept")], idx=0)
    bad = _page([], idx=1, error="x.pdf: page 2: broken")
    assert [e["page_idx"] for e in build_content_list([ok, bad])] == [0]
