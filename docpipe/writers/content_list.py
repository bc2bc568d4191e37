"""MinerU-compatible content_list: one flat list of entries per document, in
reading order, page furniture included (MINERU_FORMAT.md, "Output files").

Contract: `build_content_list(pages)` is pure (no I/O). Every entry has `type`,
`bbox` (ints 0..1000 relative to the page, x0 y0 x1 y1) and `page_idx`.
Image and table crops are referenced by `img_path` as set on the Block
("images/<sha256>.png", relative to the document folder); the file writer
saves the bytes under that name. Failed pages contribute no entries.
"""
from __future__ import annotations

from docpipe.schema import FURNITURE_TYPES, Block, PageResult

# Layout types that MinerU folds into a plain "text" entry.
_TEXT_LIKE = frozenset({"text", "title", "ref_text", "phonetic", "unknown", "image_caption",
                        "image_footnote", "table_caption", "table_footnote", "code_caption"})


def scale_bbox(block: Block, page: PageResult) -> list[int]:
    """Block bbox (PDF points) -> MinerU's 0..1000 page-relative integers."""
    w = page.width_pt or 1.0
    h = page.height_pt or 1.0
    x0, y0, x1, y1 = block.bbox
    vals = (x0 / w, y0 / h, x1 / w, y1 / h)
    return [max(0, min(1000, round(v * 1000))) for v in vals]


def block_entry(block: Block, page: PageResult) -> dict:
    """One content_list entry for one block."""
    entry: dict = {"type": block.type, "bbox": scale_bbox(block, page), "page_idx": page.page_idx}
    t = block.type
    if t in _TEXT_LIKE:
        entry["type"] = "text"
        entry["text"] = block.text
        if t == "title":
            entry["text_level"] = max(1, min(block.level or 1, 6))
    elif t == "equation":
        entry.update(text=block.text, text_format="latex")
    elif t == "image":
        entry.update(img_path=block.img_path, image_caption=list(block.captions),
                     image_footnote=list(block.footnotes))
    elif t == "table":
        entry.update(img_path=block.img_path, table_caption=list(block.captions),
                     table_footnote=list(block.footnotes), table_body=block.html)
    elif t in ("code", "algorithm"):
        entry.update(type="code", sub_type=t, code_body=block.text, code_caption=list(block.captions))
    elif t == "list":
        entry.update(sub_type="text", list_items=[ln for ln in block.text.splitlines() if ln.strip()])
    elif t in FURNITURE_TYPES:
        entry["text"] = block.text
    else:  # an unexpected type is kept, not dropped: its text is still content
        entry["text"] = block.text
    return entry


def build_content_list(pages: list[PageResult]) -> list[dict]:
    return [block_entry(b, p) for p in pages if p.ok for b in p.blocks]
