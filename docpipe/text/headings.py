"""Heading levels from a document's font statistics.

Lifecycle: `FontStats.add(lines)` for each page of a first pass (or a sample
of pages on long documents), then `FontStats.levels()` freezes a
`HeadingLevels`: the body size is the size that carries most characters;
each larger size that is used sparingly (few characters, short lines) is a
heading size, the largest being level 1. Bold lines at body size become the
level after the last size level (italic single lines too: layout.py decides
what counts as emphasized). `layout.py` asks `HeadingLevels.level(...)`
for a candidate heading block; 0 means "not a heading".
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from docpipe.text.lines import TextLine

MAX_LEVEL = 6
_SIZE_STEP_PT = 0.5  # sizes closer than this are the same size
_MIN_RATIO = 1.12  # a heading is at least this much larger than body text


def _key(size_pt: float) -> float:
    return round(size_pt / _SIZE_STEP_PT) * _SIZE_STEP_PT


@dataclass
class HeadingLevels:
    body_size_pt: float = 10.0  # font size of body text
    size_levels: dict[float, int] = field(default_factory=dict)  # rounded size -> level 1..
    bold_level: int = 0  # level of bold body-size headings (0: none)

    def level(self, size_pt: float, is_emphasized: bool) -> int:
        """Level for a short stand-alone block of this style (0: body text)."""
        lv = self.size_levels.get(_key(size_pt))
        if lv:
            return lv
        if size_pt >= self.body_size_pt * _MIN_RATIO:
            # A size unseen in the statistics (sampled pass): nearest larger known level.
            larger = [lv for s, lv in self.size_levels.items() if s <= _key(size_pt)]
            return min(larger) if larger else 1
        if is_emphasized and self.bold_level and size_pt >= self.body_size_pt - _SIZE_STEP_PT:
            return self.bold_level
        return 0


@dataclass
class FontStats:
    chars_by_size: Counter = field(default_factory=Counter)  # rounded size -> characters
    lines_by_size: Counter = field(default_factory=Counter)  # rounded size -> lines
    bold_sizes: Counter = field(default_factory=Counter)  # rounded size -> bold short lines

    def add(self, lines: list[TextLine]) -> None:
        for ln in lines:
            k = _key(ln.size_pt)
            n = len(ln.text)
            self.chars_by_size[k] += n
            self.lines_by_size[k] += 1
            if ln.is_bold and n < 80:
                self.bold_sizes[k] += 1

    def levels(self) -> HeadingLevels:
        if not self.chars_by_size:
            return HeadingLevels()
        body = max(self.chars_by_size, key=self.chars_by_size.get)
        total = sum(self.chars_by_size.values())
        heads = []
        for size, chars in self.chars_by_size.items():
            if size < body * _MIN_RATIO:
                continue
            avg_len = chars / max(1, self.lines_by_size[size])
            # Headings are a small share of the text and come in short lines.
            if chars <= 0.3 * total and avg_len < 120:
                heads.append(size)
        heads.sort(reverse=True)
        # Too many distinct sizes: merge the smallest into the last kept level.
        size_levels = {s: min(i + 1, MAX_LEVEL - 1) for i, s in enumerate(heads)}
        bold_level = min(len(heads) + 1, MAX_LEVEL)
        return HeadingLevels(body_size_pt=body, size_levels=size_levels, bold_level=bold_level)
