"""A line of text with its geometry: what both the PDF text layer and OCR
produce, so that one layout analysis (paragraphs, columns, reading order,
headings, lists) serves both."""
from __future__ import annotations

from dataclasses import dataclass

from docpipe.schema import BBox


@dataclass
class TextLine:
    text: str  # the line's text, spans joined
    bbox: BBox  # PDF points, top-left origin
    size_pt: float  # dominant font size (text layer) or estimated from line height (OCR)
    is_bold: bool = False  # dominant span is bold
    is_italic: bool = False  # dominant span is italic
    is_mono: bool = False  # dominant span uses a monospaced font
    font: str = ""  # dominant font name ("" for OCR)
    score: float = 1.0  # OCR confidence, 1.0 for the text layer
