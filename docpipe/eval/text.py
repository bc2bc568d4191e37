"""Plain-text normalized edit distance (NED: 0 best, 1 worst).

Both sides are reduced to plain text with exactly the normalisation of the
project's reference metric (bench/quality_eval.py): image links, link targets,
HTML comments and tags, heading and list markers, emphasis/code/pipe
characters and table rules removed, whitespace runs collapsed; then the whole
documents are compared at once (order-sensitive). Keep the steps and their
order in sync with that script: `docpipe eval` must agree with it.
"""
from __future__ import annotations

import html
import re

from rapidfuzz.distance import Levenshtein

# (pattern, replacement, flags), applied in order.
_STEPS = (
    (r"!\[[^\]]*\]\([^)]*\)", " ", 0),  # images
    (r"\[([^\]]*)\]\([^)]*\)", r"\1", 0),  # links -> their text
    (r"<!--.*?-->", " ", re.S),  # comments
    (r"<[^>]+>", " ", 0),  # html tags
    (None, None, 0),  # html entities are unescaped here
    (r"^\s{0,3}#{1,6}\s*", "", re.M),  # heading markers
    (r"^\s*([-*+]|\d+[.)])\s+", "", re.M),  # list markers
    (r"[*_`|]+", " ", 0),  # emphasis, code, pipes
    (r"^\s*:?-{3,}:?\s*$", " ", re.M),  # rules / table separators
    (r"\s+", " ", 0),
)


def plain(md: str) -> str:
    s = md
    for pattern, repl, flags in _STEPS:
        s = html.unescape(s) if pattern is None else re.sub(pattern, repl, s, flags=flags)
    return s.strip()


def ned(pred_md: str, ref_md: str) -> float:
    a, b = plain(pred_md), plain(ref_md)
    if not a and not b:
        return 0.0
    return Levenshtein.normalized_distance(a, b)
