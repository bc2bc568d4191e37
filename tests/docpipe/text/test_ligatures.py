"""Typeset ligatures come out as their letters ("ﬁ" -> "fi"): the sample
report's fonts set ﬀ/ﬁ/ﬃ ligatures (seen as U+FB00..U+FB06 before)."""
from pathlib import Path

import pymupdf

from docpipe.config import ConvertOptions
from docpipe.text.backend import extract_pages
from docpipe.writers.markdown import render_markdown

SAMPLE = Path(__file__).resolve().parents[3] / "samples" / "two_column_report.pdf"


def test_no_ligature_code_points_in_the_markdown():
    with pymupdf.open(SAMPLE) as doc:
        md = render_markdown(list(extract_pages(doc, list(range(len(doc))), ConvertOptions(ocr="never"))))
    assert "first" in md and "staff" in md
    assert not [c for c in md if "\ufb00" <= c <= "\ufb06"]
