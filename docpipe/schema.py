"""Typed records that the pipeline's stages exchange.

Lifecycle of one document:
  ingest (open, validate) -> per page: text layer | OCR | VLM -> PageResult
  -> assemble (Markdown, content_list) -> writers (files, Parquet row).

Coordinates: `Block.bbox` is in PDF points of the unrotated page, origin top
left (PyMuPDF's convention). Writers convert to MinerU's 0..1000 scale.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from enum import Enum

BBox = tuple[float, float, float, float]  # x0, y0, x1, y1 in PDF points


class Status(str, Enum):
    SUCCESS = "success"  # every page converted
    PARTIAL = "partial"  # some pages failed; the rest is kept
    FAILURE = "failure"  # nothing usable (unreadable file, all pages failed)


# Block types follow MinerU's layout vocabulary (MINERU_FORMAT.md).
BODY_TYPES = frozenset({
    "text", "title", "table", "image", "equation", "list", "code", "algorithm",
    "ref_text", "image_caption", "image_footnote", "table_caption",
    "table_footnote", "code_caption", "phonetic", "unknown",
})
# Page furniture: kept in content_list, kept out of the Markdown body.
FURNITURE_TYPES = frozenset({"header", "footer", "page_number", "aside_text", "page_footnote"})


@dataclass
class Block:
    """One layout block of a page, in reading order within its page."""

    type: str  # MinerU block type (BODY_TYPES | FURNITURE_TYPES)
    bbox: BBox  # PDF points, top-left origin
    text: str = ""  # Markdown-ready inline text; list: lines with markers; equation: LaTeX; code: source
    level: int = 0  # heading level 1..6 for titles, 0 otherwise
    html: str = ""  # table body as HTML (always filled for tables when known)
    markdown_table: str = ""  # table as a pipe table when no cell spans, else ""
    image: bytes | None = None  # PNG bytes of an image/table crop, saved by the writer
    img_path: str = ""  # set by the writer: "images/<sha256>.png", relative to the document dir
    captions: list[str] = field(default_factory=list)  # caption texts attached to image/table/code
    footnotes: list[str] = field(default_factory=list)  # footnote texts attached to image/table
    rotation: int = 0  # degrees the content is rotated (0, 90, 180, 270)
    source: str = "text_layer"  # text_layer | ocr | vlm
    score: float = 1.0  # confidence, 0..1 (OCR/VLM); 1.0 for the text layer


@dataclass
class PageResult:
    page_idx: int  # 0-based index in the document
    width_pt: float  # page width in PDF points
    height_pt: float  # page height in PDF points
    blocks: list[Block] = field(default_factory=list)  # reading order, furniture included
    source: str = "text_layer"  # text_layer | ocr | vlm | hybrid | none
    error: str = ""  # non-empty when this page failed; blocks then empty
    timings_s: dict[str, float] = field(default_factory=dict)  # stage -> seconds

    @property
    def ok(self) -> bool:
        return not self.error


@dataclass
class DocumentResult:
    """What `docpipe.convert` yields per input document."""

    source_path: str  # path or URI the document came from
    name: str  # output stem (file name without .pdf)
    doc_id: str = ""  # sha256 of the file bytes ("" when unreadable)
    num_pages: int = 0  # pages in the document (before page-range selection)
    pages: list[PageResult] = field(default_factory=list)  # the converted pages, in order
    markdown: str = ""  # the assembled document Markdown
    content_list: list[dict] = field(default_factory=list)  # MinerU content_list entries
    status: Status = Status.SUCCESS
    error: str = ""  # document-level error, or a summary of page errors
    backend: str = ""  # pipeline | vlm | hybrid
    timings_s: dict[str, float] = field(default_factory=dict)  # stage -> seconds, wall

    @property
    def blocks(self) -> list[Block]:
        return [b for p in self.pages for b in p.blocks]
