"""A born-digital page's text layer -> `TextLine`s.

Contract: `read_page_text(page)` calls PyMuPDF's `get_text("dict")` once
(without image payloads, which we never need here) and returns
`PageText`: horizontal lines as `TextLine`s (PDF points, top-left origin,
in the page as displayed, i.e. after /Rotate; the backend maps boxes back)
with bold / italic / monospace flags and the font of the span that carries
most of the line's characters, plus the rotated lines apart (margin stamps,
vertical labels) because paragraph layout only makes sense for horizontal
text. Nothing here decides structure; `layout.py` does, for OCR lines too.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field

import pymupdf

from docpipe.text.lines import TextLine

# PyMuPDF span flag bits (stable since 1.18).
_FLAG_ITALIC = 2
_FLAG_MONO = 8
_FLAG_BOLD = 16
# Extraction flags: whitespace kept, clipped to the media box, ligatures
# expanded ("ﬁ" -> "fi": readers and search want the letters), no image blocks
# (their bytes would be copied for nothing).
_TEXT_FLAGS = pymupdf.TEXT_PRESERVE_WHITESPACE | pymupdf.TEXT_MEDIABOX_CLIP
_CONTROL_RE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_MONO_NAMES = ("mono", "courier", "consol", "menlo", "typewriter", "cmtt")


@dataclass
class PageText:
    lines: list[TextLine] = field(default_factory=list)  # horizontal lines, extraction order
    rotated: list[TextLine] = field(default_factory=list)  # lines whose direction is not left-to-right horizontal


def read_page_text(page: "pymupdf.Page") -> PageText:
    out = PageText()
    data = page.get_text("dict", flags=_TEXT_FLAGS)
    # Text comes in unrotated page space; layout works on the page as displayed.
    rot = page.rotation_matrix if page.rotation else None
    for block in data["blocks"]:
        for line in block.get("lines", ()):
            tl = _line(line)
            if tl is None:
                continue
            dx, dy = line["dir"]
            if rot is not None:
                tl.bbox = tuple(pymupdf.Rect(tl.bbox) * rot)
                dx, dy = dx * rot.a + dy * rot.c, dx * rot.b + dy * rot.d
            (out.lines if abs(dy) < 0.05 and dx > 0 else out.rotated).append(tl)
    return out


def _line(line: dict) -> TextLine | None:
    spans = [s for s in line["spans"] if s["text"].strip()]
    if not spans:
        return None
    parts: list[str] = []
    prev = None
    for s in spans:
        text = s["text"]
        if prev is not None and parts and not parts[-1].endswith(" ") and not text.startswith(" "):
            # Spans abutting with a visible gap are separate words.
            if s["bbox"][0] - prev["bbox"][2] > 0.2 * s["size"]:
                parts.append(" ")
        parts.append(text)
        prev = s
    main = max(spans, key=lambda s: len(s["text"].strip()))
    font = main["font"]
    low = font.lower()
    flags = main["flags"]
    x0 = min(s["bbox"][0] for s in spans)
    y0 = min(s["bbox"][1] for s in spans)
    x1 = max(s["bbox"][2] for s in spans)
    y1 = max(s["bbox"][3] for s in spans)
    # Control characters are unmapped glyph codes (checkbox dingbats), never text.
    text = " ".join(_CONTROL_RE.sub("", "".join(parts)).split())
    if not text:
        return None
    return TextLine(
        text=text,
        bbox=(x0, y0, x1, y1),
        size_pt=round(main["size"], 1),
        is_bold=bool(flags & _FLAG_BOLD) or "bold" in low or "black" in low or "heavy" in low,
        is_italic=bool(flags & _FLAG_ITALIC) or "italic" in low or "oblique" in low,
        is_mono=bool(flags & _FLAG_MONO) or any(m in low for m in _MONO_NAMES),
        font=font,
    )
