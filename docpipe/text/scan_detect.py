"""Which pages need OCR: `needs_ocr(page)` is True when the page has no usable
text layer.

A page needs OCR when
- it draws no text at all but shows images (a scan) or many vector paths
  (text converted to outlines);
- images cover most of it and the visible text is too little to be its
  content (a scan with a stamp or a page number added);
- the text layer is garbage: mostly U+FFFD / private-use / control code
  points (glyphs without a Unicode mapping), or mostly symbols where letters
  should be (a broken encoding);
- its text is mostly invisible (an OCR layer over a scan) and that text is
  garbage by the same test, or reads as no language (Latin words without vowels).
A blank page (nothing drawn) does not: there is nothing to read.

Cost: one display-list pass (`get_bboxlog`) plus, when there is text, one
plain-text extraction; a few milliseconds on typical pages.
"""
from __future__ import annotations

import re
from typing import TYPE_CHECKING

import numpy as np

from docpipe.geometry import area

if TYPE_CHECKING:
    import pymupdf

SCAN_COVER = 0.5  # images covering at least this share of the page make it scan-like
MIN_TEXT_CHARS = 100  # fewer visible good characters on a scan-like page: OCR it
MIN_IMAGE_COVER = 0.05  # a text-less page with less image than this is blank or decorative
MIN_OUTLINE_PATHS = 300  # a text-less page drawing this many paths likely shows outlined text
MAX_BAD_SHARE = 0.25  # unmapped / private-use share above which a text layer is garbage
MIN_WORDY_SHARE = 0.6  # letters and digits among non-space characters of real text
_GRID = 64  # image coverage is measured on a grid of this many cells a side
_SPACE_RE = re.compile(r"\s")
# Dot leaders and rules (tables of contents, forms) are punctuation, not noise.
_LEADER_RE = re.compile(r"[._\-\u2026\u00b7]")
_BAD_RE = re.compile("[\ufffd\ue000-\uf8ff\U000f0000-\U0010ffff\x00-\x08\x0b\x0c\x0e-\x1f]")
_WORDY_RE = re.compile(r"[^\W_]")  # letters and digits of any script
_LATIN_RE = re.compile(r"[A-Za-z]")
_WORD_RE = re.compile(r"[a-z]{2,}")
_VOWEL_RE = re.compile("[aeiouy]")


def needs_ocr(page: "pymupdf.Page") -> bool:
    log = page.get_bboxlog()
    shown = sum(area(b) for kind, b in log if kind in ("fill-text", "stroke-text"))
    hidden = sum(area(b) for kind, b in log if kind == "ignore-text")
    if not shown and not hidden:
        num_paths = sum(kind.endswith("-path") for kind, _ in log)
        return image_cover(page, log) >= MIN_IMAGE_COVER or num_paths >= MIN_OUTLINE_PATHS
    text = page.get_text("text")
    if is_garbage(text):
        return True  # unmapped glyphs / broken encoding, or a nonsense OCR layer
    if hidden > shown:
        return False  # a plausible OCR layer over a scan: use it
    good = len(text) - len(_SPACE_RE.findall(text)) - len(_BAD_RE.findall(text))
    return good < MIN_TEXT_CHARS and image_cover(page, log) >= SCAN_COVER


def image_cover(page: "pymupdf.Page", log=None) -> float:
    """Share of the page area covered by images (overlaps counted once)."""
    log = page.get_bboxlog() if log is None else log
    rect = page.rect
    if rect.is_empty:
        return 0.0
    grid = np.zeros((_GRID, _GRID), dtype=bool)
    sx, sy = _GRID / rect.width, _GRID / rect.height
    for kind, (x0, y0, x1, y1) in log:
        if kind not in ("fill-image", "fill-imgmask"):
            continue
        c0, c1 = int(max(0, (x0 - rect.x0) * sx)), int(min(_GRID, (x1 - rect.x0) * sx + 0.5))
        r0, r1 = int(max(0, (y0 - rect.y0) * sy)), int(min(_GRID, (y1 - rect.y0) * sy + 0.5))
        grid[r0:r1, c0:c1] = True
    return float(grid.mean())


def is_garbage(text: str) -> bool:
    """True when `text` does not read as writing in any script: mostly
    unmapped code points, mostly symbols, or (Latin) words without vowels."""
    num = len(text) - len(_SPACE_RE.findall(text)) - len(_LEADER_RE.findall(text))
    if num < 20:
        return False  # too little to judge; the coverage rules decide
    if len(_BAD_RE.findall(text)) / num > MAX_BAD_SHARE:
        return True
    if len(_WORDY_RE.findall(text)) / num < MIN_WORDY_SHARE:
        return True
    if len(_LATIN_RE.findall(text)) / num > 0.5:
        words = [w for w in _WORD_RE.findall(text.lower())]
        if len(words) >= 5:
            # Real Latin-script text: nearly every word has a vowel.
            voweled = sum(bool(_VOWEL_RE.search(w)) for w in words)
            return voweled / len(words) < 0.6
    return False
