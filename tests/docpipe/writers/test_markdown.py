"""render_markdown: body in order, furniture out, table and image forms."""
from docpipe.schema import Block, PageResult
from docpipe.writers.markdown import block_markdown, render_markdown

BOX = (0.0, 0.0, 10.0, 10.0)


def test_furniture_stays_out_and_order_is_kept():
    page = PageResult(0, 100, 100, blocks=[
        Block("header", BOX, text="Running head"), Block("title", BOX, text="Intro", level=2),
        Block("text", BOX, text="Body."), Block("list", BOX, text="- a\n- b"),
        Block("page_number", BOX, text="7"), Block("footer", BOX, text="Confidential")])
    assert render_markdown([page]) == "## Intro\n\nBody.\n\n- a\n- b\n"


def test_table_prefers_markdown_unless_spans_or_html_asked():
    md = "| a | b |\n|---|---|\n| 1 | 2 |"
    plain = Block("table", BOX, html="<table><tr><td>a</td></tr></table>", markdown_table=md)
    spanning = Block("table", BOX, html="<table><tr><td colspan=\"2\">a</td></tr></table>")
    assert block_markdown(plain) == md
    assert block_markdown(plain, "html") == plain.html
    assert block_markdown(spanning) == spanning.html


def test_image_link_with_caption_and_empty_pages():
    img = Block("image", BOX, img_path="images/abc.png", captions=["Figure 1. A cat."])
    assert block_markdown(img) == "![](images/abc.png)\n\nFigure 1. A cat."
    assert render_markdown([PageResult(0, 1, 1)]) == ""
