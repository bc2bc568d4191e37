from docpipe.models.mineru25.otsl import convert, parse_otsl


def test_plain_table_gives_html_and_markdown():
    html, md = convert("<fcel>a<fcel>b<nl><fcel>1<ecel><nl>")
    assert html == "<table><tr><td>a</td><td>b</td></tr><tr><td>1</td><td></td></tr></table>"
    assert md == "| a | b |\n| --- | --- |\n| 1 |  |"


def test_rowspan_and_colspan():
    html, md = convert("<fcel>Model<fcel>Score<lcel><nl><ucel><fcel>EN<fcel>DE<nl>"
                       "<fcel>x<fcel>1<fcel>2<nl>")
    assert html == ('<table><tr><td rowspan="2">Model</td><td colspan="2">Score</td></tr>'
                    '<tr><td>EN</td><td>DE</td></tr><tr><td>x</td><td>1</td><td>2</td></tr></table>')
    assert md == ""  # a span cannot be a pipe table


def test_two_dimensional_span_with_xcel():
    table = parse_otsl("<fcel>big<lcel><fcel>c<nl><ucel><xcel><fcel>d<nl><fcel>e<fcel>f<fcel>g<nl>")
    big = table.cells[0]
    assert (big.text, big.row_span, big.col_span) == ("big", 2, 2)
    assert table.num_rows == 3 and table.num_cols == 3
    assert [c.text for c in table.cells] == ["big", "c", "d", "e", "f", "g"]
    html, _ = convert("<fcel>big<lcel><fcel>c<nl><ucel><xcel><fcel>d<nl>")
    assert html == '<table><tr><td rowspan="2" colspan="2">big</td><td>c</td></tr><tr><td>d</td></tr></table>'


def test_ragged_rows_are_padded_and_text_escaped():
    html, md = convert("<fcel>a<b<fcel>x|y<fcel>z<nl><fcel>1<nl>")
    assert html == ("<table><tr><td>a&lt;b</td><td>x|y</td><td>z</td></tr>"
                    "<tr><td>1</td><td></td><td></td></tr></table>")
    assert md.splitlines()[0] == "| a<b | x\\|y | z |"


def test_orphan_merge_tokens_become_cells():
    table = parse_otsl("<lcel>a<fcel>b<nl><ucel><fcel>c<nl>")
    # lcel at a row start and ucel under it have nothing to merge into on their own row/col...
    assert table.num_rows == 2 and table.num_cols == 2
    assert table.cells[0].row_span == 2  # ...the ucel merges into the orphan lcel's cell
    assert [c.text for c in table.cells] == ["a", "b", "c"]


def test_text_after_a_merge_token_is_kept():
    table = parse_otsl("<fcel>a<lcel>b<nl>")
    assert [(c.text, c.col_span) for c in table.cells] == [("a b", 2)]


def test_html_passthrough_and_empty():
    assert convert("<table><tr><td>x</td></tr></table>") == ("<table><tr><td>x</td></tr></table>", "")
    assert convert("no table here") == ("", "")
