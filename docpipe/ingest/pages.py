"""Page-range selection: "1-3,7,10-" (1-based, as people count pages) to
sorted, de-duplicated 0-based page indices.

Grammar: parts separated by commas; a part is N, A-B, A- (to the end) or -B
(from the start); spaces are ignored. Syntax errors (0, reversed ranges,
junk) always raise. In a batch the same --pages applies to documents of
different lengths, so pages past a document's end are dropped rather than
fatal; only a selection that leaves no page at all raises.
"""
from __future__ import annotations

Span = tuple[int, int | None]  # first and last 1-based page, last None = to the end


class PageRangeError(ValueError):
    pass


def parse_page_ranges(spec: str | None, num_pages: int) -> list[int]:
    """0-based indices of the pages `spec` selects in a document of `num_pages`; None = all."""
    if spec is None:
        return list(range(num_pages))
    selected = set()
    for first, last in parse_spans(spec):
        last = num_pages if last is None else min(last, num_pages)
        selected.update(range(first - 1, last))
    if not selected:
        raise PageRangeError(f"pages {spec!r} select no page of a document with {num_pages} pages")
    return sorted(selected)


def parse_spans(spec: str) -> list[Span]:
    """Syntax check on its own (the CLI calls it before opening any file)."""
    if not spec.strip():
        raise PageRangeError("empty page ranges")
    spans = []
    for part in spec.replace(" ", "").split(","):
        if not part:
            raise PageRangeError(f"empty part in page ranges {spec!r}")
        first_text, dash, last_text = part.partition("-")
        first = _page_number(first_text, spec) if first_text else 1
        last = (_page_number(last_text, spec) if last_text else None) if dash else first
        if last is not None and last < first:
            raise PageRangeError(f"reversed range {part!r} in page ranges {spec!r}")
        if dash and not first_text and not last_text:
            raise PageRangeError(f"range {part!r} has no page numbers in page ranges {spec!r}")
        spans.append((first, last))
    return spans


def _page_number(text: str, spec: str) -> int:
    if not (text.isascii() and text.isdigit()):
        raise PageRangeError(f"{text!r} is not a page number in page ranges {spec!r}")
    number = int(text)
    if number < 1:
        raise PageRangeError(f"page numbers start at 1, got {number} in page ranges {spec!r}")
    return number
