"""Page-range parsing: 1-based ranges in, sorted 0-based indices out."""
from __future__ import annotations

import pytest

from docpipe.ingest.pages import PageRangeError, parse_page_ranges, parse_spans


@pytest.mark.parametrize("spec, expected", [
    (None, list(range(10))),
    ("1-3,7,10-", [0, 1, 2, 6, 9]),
    ("7, 1-3, 2", [0, 1, 2, 6]),  # sorted, de-duplicated, spaces ignored
    ("-2", [0, 1]),
    ("3-", list(range(2, 10))),
    ("4-4", [3]),
    ("10", [9]),
    ("5-20", [4, 5, 6, 7, 8, 9]),  # past the end: clipped
    ("2,50", [1]),  # past the end: dropped
])
def test_selections(spec, expected):
    assert parse_page_ranges(spec, 10) == expected


@pytest.mark.parametrize("spec, message", [
    ("", "empty page ranges"),
    (" ", "empty page ranges"),
    ("1,,3", "empty part"),
    ("1,", "empty part"),
    ("0", "start at 1"),
    ("0-3", "start at 1"),
    ("3-1", "reversed range '3-1'"),
    ("-", "no page numbers"),
    ("a", "'a' is not a page number"),
    ("1.5", "'1.5' is not a page number"),
    ("1-2-3", "'2-3' is not a page number"),
    ("-3-", "'3-' is not a page number"),
    ("²", "is not a page number"),
])
def test_syntax_errors(spec, message):
    with pytest.raises(PageRangeError, match=message):
        parse_page_ranges(spec, 10)
    with pytest.raises(ValueError):  # checkable without a document, as the CLI does
        parse_spans(spec)


def test_selection_with_no_page_of_this_document():
    with pytest.raises(PageRangeError, match="select no page of a document with 3 pages"):
        parse_page_ranges("5-", 3)
    assert parse_spans("5-,2") == [(5, None), (2, 2)]
