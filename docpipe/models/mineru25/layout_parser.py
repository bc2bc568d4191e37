"""Parse MinerU2.5's layout answer into blocks.

Grammar, one block per match, in reading order:
    <|box_start|>x1 y1 x2 y2<|box_end|><|ref_start|>TYPE<|ref_end|><|rotate_up|>
Coordinates are integers 0..1000 of the page. Rules: out-of-range or
zero-area boxes are dropped; reversed corners are swapped; the rotation
token (optional, anywhere before the next box) gives the angle, 0 when
absent; a type outside the vocabulary becomes `unknown` (its content is still
recognised, not lost); text/equation boxes at least 90% inside a table box
are dropped (the table's recognition already covers them); a box repeated
with the same type (a looping answer) is kept once.
"""
from __future__ import annotations

import re

from docpipe.geometry import inside_share
from docpipe.models.base import LayoutBlock

BLOCK_TYPES = frozenset({
    "text", "title", "table", "image", "code", "algorithm", "header", "footer",
    "page_number", "page_footnote", "aside_text", "equation", "equation_block",
    "ref_text", "list", "phonetic", "table_caption", "table_footnote",
    "image_caption", "image_footnote", "code_caption", "unknown",
})
ANGLES = {"<|rotate_up|>": 0, "<|rotate_right|>": 90, "<|rotate_down|>": 180, "<|rotate_left|>": 270}
INSIDE_TABLE_FRACTION = 0.9  # share of a text/equation box's area inside a table that drops it

_BLOCK_RE = re.compile(
    r"<\|box_start\|>\s*(-?\d+)\s+(-?\d+)\s+(-?\d+)\s+(-?\d+)\s*<\|box_end\|>"
    r"<\|ref_start\|>\s*([^<]*?)\s*<\|ref_end\|>(.*?)(?=<\|box_start\|>|$)",
    re.DOTALL,
)
_ANGLE_RE = re.compile("|".join(re.escape(t) for t in ANGLES))


def convert_box(coords: tuple[int, int, int, int]) -> tuple[float, float, float, float] | None:
    """0..1000 integers -> fractions, corners ordered; None when out of range or empty."""
    if any(c < 0 or c > 1000 for c in coords):
        return None
    x1, y1, x2, y2 = coords
    x1, x2 = min(x1, x2), max(x1, x2)
    y1, y2 = min(y1, y2), max(y1, y2)
    if x1 == x2 or y1 == y2:
        return None
    return (x1 / 1000, y1 / 1000, x2 / 1000, y2 / 1000)


def parse_layout(answer: str) -> list[LayoutBlock]:
    blocks, seen = [], set()
    for m in _BLOCK_RE.finditer(answer):
        bbox = convert_box(tuple(int(v) for v in m.groups()[:4]))
        if bbox is None:
            continue
        kind = m.group(5).strip().lower()
        kind = kind if kind in BLOCK_TYPES else "unknown"
        if (kind, bbox) in seen:  # a looping answer repeats boxes; one copy is the content
            continue
        seen.add((kind, bbox))
        angle = _ANGLE_RE.search(m.group(6))
        blocks.append(LayoutBlock(type=kind, bbox=bbox, angle=ANGLES[angle.group(0)] if angle else 0))
    return drop_inside_tables(blocks)


def drop_inside_tables(blocks: list[LayoutBlock]) -> list[LayoutBlock]:
    tables = [b.bbox for b in blocks if b.type == "table"]

    def covered(b: LayoutBlock) -> bool:
        return b.type in ("text", "equation") and any(
            inside_share(b.bbox, t) >= INSIDE_TABLE_FRACTION for t in tables)

    return [b for b in blocks if not covered(b)]
