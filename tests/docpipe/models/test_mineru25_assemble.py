from docpipe.models.base import LayoutBlock
from docpipe.models.mineru25.assemble import LOOP_SCORE, assemble
from docpipe.models.mineru25.family import MinerU25Family
from docpipe.models.mineru25.headings import numbered_level, title_levels


def _lb(type_, bbox, content="", **kw):
    return LayoutBlock(type=type_, bbox=bbox, content=content, **kw)


def test_captions_attach_to_nearest_body_of_their_kind():
    blocks = [
        _lb("table", (0.1, 0.1, 0.5, 0.3), extra={"html": "<table></table>"}),
        _lb("table_caption", (0.1, 0.05, 0.5, 0.08), "Table 1"),
        _lb("image", (0.1, 0.5, 0.5, 0.7)),
        _lb("image", (0.6, 0.5, 0.9, 0.7)),
        _lb("image_caption", (0.6, 0.72, 0.9, 0.75), "Figure 2"),
        _lb("image_footnote", (0.1, 0.72, 0.5, 0.75), "Source: x"),
        _lb("code_caption", (0.1, 0.9, 0.5, 0.95), "Listing 1"),  # no code body: stays as text
    ]
    out = assemble(blocks, 600, 800)
    assert [b.type for b in out] == ["table", "image", "image", "code_caption"]
    assert out[0].captions == ["Table 1"]
    assert out[1].footnotes == ["Source: x"] and out[1].captions == []
    assert out[2].captions == ["Figure 2"]
    assert out[0].bbox == (60.0, 80.0, 300.0, 240.0)


def test_containers_dropped_furniture_kept_loops_marked():
    blocks = [
        _lb("header", (0.1, 0.0, 0.9, 0.03), "Journal"),
        _lb("list", (0.1, 0.1, 0.9, 0.3)),
        _lb("text", (0.1, 0.1, 0.9, 0.2), "item", is_loop=True),
        _lb("equation_block", (0.1, 0.4, 0.9, 0.5)),
        _lb("page_number", (0.5, 0.95, 0.55, 0.98), "3"),
    ]
    out = assemble(blocks, 600, 800)
    assert [b.type for b in out] == ["header", "text", "page_number"]
    assert out[1].score == LOOP_SCORE and out[0].score == 1.0


def test_heading_levels():
    assert numbered_level("3 Method") == 1
    assert numbered_level("3.2 Results") == 2
    assert numbered_level("A.1 Proofs") == 2
    assert numbered_level("Appendix B") == 1
    assert numbered_level("A Study of X") == 0
    titles = [("## Deep", (0, 0.1, 1, 0.12)), ("Big Title", (0, 0, 1, 0.05)),
              ("Small", (0, 0.2, 1, 0.22)), ("Also big", (0, 0.3, 1, 0.346))]
    assert title_levels(titles) == [("Deep", 2), ("Big Title", 1), ("Small", 2), ("Also big", 1)]


def test_fill_block_post_processing_by_type():
    fam = MinerU25Family()
    table = _lb("table", (0, 0, 1, 1))
    fam.fill_block(table, "<fcel>a<fcel>b<nl>")
    assert table.extra["markdown"] == "| a | b |\n| --- | --- |"
    eq = _lb("equation", (0, 0, 1, 1))
    fam.fill_block(eq, "\\[\\frac{a}{b\\]")
    assert eq.content == "\\frac{a}{b}"
    code = _lb("code", (0, 0, 1, 1))
    fam.fill_block(code, "```python\nx = 1\n```")
    assert code.content == "x = 1"
    text = _lb("text", (0, 0, 1, 1))
    fam.fill_block(text, "loop " + "again and again " * 50)
    assert text.is_loop and text.content == "loop again and again"
    bad = _lb("table", (0, 0, 1, 1))
    fam.fill_block(bad, "not otsl")
    [block] = fam.assemble([bad], 100, 100)
    assert block.html == "" and block.text == "not otsl"  # kept visible, not lost
