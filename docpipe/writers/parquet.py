"""Parquet dataset of converted documents: one row per document.

Layout: `{out}/dataset/{name}.parquet`, one part file per document, written to
a hidden temp file in the same folder and renamed into place, so a killed run
never leaves a torn part and every finished document's row survives. Readers
(`pyarrow.dataset`, pandas, Spark, Ray Data) skip hidden files, so
`pq.read_table(f"{out}/dataset")` sees only complete rows. Re-writing a
document replaces its part, so resumed or forced runs never duplicate rows.

`to_table(results)` builds the same rows in memory for callers without an
output folder (pandas / pyarrow / Ray code).
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq

from docpipe.schema import DocumentResult, PageResult
from docpipe.writers.markdown import render_markdown

DATASET_DIR = "dataset"

PAGE_TYPE = pa.struct([
    ("page_idx", pa.int32()),  # 0-based page index in the document
    ("source", pa.string()),  # text_layer | ocr | vlm | hybrid | none
    ("markdown", pa.string()),  # this page's Markdown ("" when it failed)
    ("error", pa.string()),  # "" when the page converted
    ("num_blocks", pa.int32()),  # layout blocks found, furniture included
])

SCHEMA = pa.schema([
    ("doc_id", pa.string()),  # sha256 of the file bytes, "" when unreadable
    ("source_path", pa.string()),
    ("name", pa.string()),  # output stem, unique within the output folder
    ("num_pages", pa.int32()),  # pages in the file, before page selection
    ("markdown", pa.string()),
    ("pages", pa.list_(PAGE_TYPE)),
    ("status", pa.string()),  # success | partial | failure
    ("error", pa.string()),
    ("backend", pa.string()),
    ("timings_s", pa.map_(pa.string(), pa.float64())),  # stage -> seconds
])


def _page_row(page: PageResult, table_format: str) -> dict:
    md = render_markdown([page], table_format) if page.ok else ""
    return {"page_idx": page.page_idx, "source": page.source, "markdown": md,
            "error": page.error, "num_blocks": len(page.blocks)}


def to_row(result: DocumentResult, table_format: str = "auto") -> dict:
    status = getattr(result.status, "value", result.status)
    return {
        "doc_id": result.doc_id, "source_path": result.source_path, "name": result.name,
        "num_pages": result.num_pages, "markdown": result.markdown,
        "pages": [_page_row(p, table_format) for p in result.pages],
        "status": status, "error": result.error, "backend": result.backend,
        "timings_s": list(result.timings_s.items()),
    }


def to_table(results: list[DocumentResult], table_format: str = "auto") -> pa.Table:
    return pa.Table.from_pylist([to_row(r, table_format) for r in results], schema=SCHEMA)


def part_path(out: str | os.PathLike, name: str) -> Path:
    return Path(out) / DATASET_DIR / f"{name}.parquet"


def write_part(result: DocumentResult, out: str | os.PathLike, table_format: str = "auto") -> Path:
    """Atomically write (or replace) this document's part file."""
    final = part_path(out, result.name)
    final.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".tmp-{result.name}-", suffix=".parquet", dir=final.parent)
    os.close(fd)
    try:
        pq.write_table(to_table([result], table_format), tmp)
        os.replace(tmp, final)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return final


def read_part_meta(out: str | os.PathLike, name: str) -> dict | None:
    """source_path and status of a finished part, or None when there is none."""
    path = part_path(out, name)
    if not path.exists():
        return None
    try:
        rows = pq.read_table(path, columns=["source_path", "status"]).to_pylist()
    except (OSError, pa.ArrowException):  # unreadable part: treat as not finished
        return None
    return rows[0] if rows else None
