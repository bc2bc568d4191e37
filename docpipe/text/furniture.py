"""Running headers, footers and page numbers of a document.

Lifecycle: `FurnitureStats.add(page_idx, lines, page_height)` for each page
of the first pass (or a sample), then `FurnitureStats.freeze()` gives a
`Furniture` that `kind(line, page_height)` answers for every line of the
second pass: "header" / "footer" / "page_number", or "" for body text.

A line is furniture when it lies in the top or bottom margin band and either
(a) its text, with digits masked, recurs in the same band on a good share of
the pages (running titles, "Page 3 of 9"), or (b) it looks like a page
number (bare arabic or roman number, "Page N", "N / M", "- N -").
"""
from __future__ import annotations

import re
from collections import Counter
from dataclasses import dataclass, field

from docpipe.text.lines import TextLine

MARGIN_SHARE = 0.1  # top/bottom band height as a share of the page height
_MIN_SHARE = 0.4  # a running element recurs on at least this share of pages
_PAGE_NUM_RE = re.compile(
    r"^\s*(?:[-–—]\s*)?(?:(?:page|p\.|seite|pág\.?|página)\s*)?"
    r"(?:\d{1,4}|[ivxlcdm]{1,6})(?:\s*(?:/|of|von|de)\s*\d{1,4})?(?:\s*[-–—])?\s*$",
    re.IGNORECASE)


def is_page_number(text: str) -> bool:
    return bool(_PAGE_NUM_RE.match(text))


def _band(line: TextLine, page_height: float) -> str:
    if line.bbox[3] <= page_height * MARGIN_SHARE:
        return "top"
    if line.bbox[1] >= page_height * (1 - MARGIN_SHARE):
        return "bottom"
    return ""


def _key(text: str) -> str:
    # Digits masked so "Page 3" and "Page 4" (or dated headers) are one key.
    return re.sub(r"\d+", "#", " ".join(text.lower().split()))


@dataclass
class Furniture:
    running: frozenset = frozenset()  # (band, key) pairs that recur across pages

    def kind(self, line: TextLine, page_height: float) -> str:
        band = _band(line, page_height)
        if not band:
            return ""
        if is_page_number(line.text):
            return "page_number"
        if (band, _key(line.text)) in self.running:
            return "header" if band == "top" else "footer"
        return ""


@dataclass
class FurnitureStats:
    pages_by_key: Counter = field(default_factory=Counter)  # (band, key) -> pages it occurs on
    num_pages: int = 0  # pages seen

    def add(self, lines: list[TextLine], page_height: float) -> None:
        self.num_pages += 1
        keys = {(b, _key(ln.text)) for ln in lines if (b := _band(ln, page_height))}
        self.pages_by_key.update(keys)

    def freeze(self) -> Furniture:
        if self.num_pages < 2:
            return Furniture()
        need = max(2, _MIN_SHARE * self.num_pages)
        return Furniture(frozenset(k for k, n in self.pages_by_key.items() if n >= need))
