"""Markdown for a document: body blocks in reading order; page furniture
(headers, footers, page numbers, aside text, page footnotes) stays out."""
from __future__ import annotations

from docpipe.schema import FURNITURE_TYPES, Block, PageResult


def block_markdown(block: Block, table_format: str = "auto") -> str:
    t = block.type
    if t == "title":
        return "#" * max(1, min(block.level or 1, 6)) + " " + block.text.strip()
    if t == "table":
        if table_format == "html" or (table_format == "auto" and not block.markdown_table):
            body = block.html or block.text
        else:
            body = block.markdown_table or block.html or block.text
        return "\n\n".join([*block.captions, body, *block.footnotes]).strip()
    if t == "image":
        link = f"![]({block.img_path})" if block.img_path else ""
        return "\n\n".join([link, *block.captions, *block.footnotes]).strip()
    if t == "equation":
        return f"$$\n{block.text.strip()}\n$$" if block.text.strip() else ""
    if t in ("code", "algorithm"):
        return "\n\n".join([*block.captions, f"```\n{block.text.rstrip()}\n```"])
    return block.text.strip()


def render_markdown(pages: list[PageResult], table_format: str = "auto") -> str:
    parts = []
    for page in pages:
        for block in page.blocks:
            if block.type in FURNITURE_TYPES:
                continue
            md = block_markdown(block, table_format)
            if md:
                parts.append(md)
    return "\n\n".join(parts) + "\n" if parts else ""
