"""Heading levels for MinerU2.5 titles (the model says only "title").

Per title, first match wins:
  1. leading `#` marks in the recognised text: their count;
  2. section numbering: `3` / `3.` -> 1, `3.2` -> 2, `A.1` -> 2, ...;
     `Chapter`/`Part`/`Appendix` -> 1;
  3. otherwise by line height on the page: titles whose line height
     (box height / lines) is within 15% of the page's largest unnumbered
     title are level 1, the rest level 2.
Levels are page-local; a document-wide pass (font statistics of the text
layer) may refine them later.
"""
from __future__ import annotations

import re

MAX_LEVEL = 6
_SAME_SIZE = 0.85  # a title this fraction of the largest line height is the same level
_HASHES_RE = re.compile(r"^(#{1,6})\s+")
_NUMBER_RE = re.compile(r"^(?:[A-Z]|\d+)((?:\.\d+)*)\.?\s+\S")
_TOP_WORD_RE = re.compile(r"^(chapter|part|appendix)\b", re.IGNORECASE)


def strip_hashes(text: str) -> tuple[str, int]:
    """(text without leading '#'s, their count)."""
    m = _HASHES_RE.match(text)
    return (text[m.end():], len(m.group(1))) if m else (text, 0)


def numbered_level(text: str) -> int:
    """Level from section numbering; 0 when the title is not numbered."""
    if _TOP_WORD_RE.match(text):
        return 1
    m = _NUMBER_RE.match(text)
    if not m:
        return 0
    # A bare letter ("A Study of ...") is a word, not a number: needs a sub-number.
    if text[0].isalpha() and not m.group(1):
        return 0
    return min(MAX_LEVEL, 1 + m.group(1).count("."))


def line_height(bbox: tuple[float, float, float, float], text: str) -> float:
    return (bbox[3] - bbox[1]) / max(1, text.count("\n") + 1)


def title_levels(titles: list[tuple[str, tuple[float, float, float, float]]]) -> list[tuple[str, int]]:
    """(clean text, level) for each (text, bbox) title of one page, in order."""
    out: list[tuple[str, int]] = []
    pending: list[int] = []  # titles to level by size
    for text, bbox in titles:
        text, hashes = strip_hashes(text.strip())
        level = hashes or numbered_level(text)
        if not level:
            pending.append(len(out))
        out.append((text, level))
    if pending:
        heights = {i: line_height(titles[i][1], out[i][0]) for i in pending}
        top = max(heights.values())
        for i in pending:
            out[i] = (out[i][0], 1 if heights[i] >= top * _SAME_SIZE else 2)
    return out
