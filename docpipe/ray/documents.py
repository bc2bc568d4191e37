"""One document inside a Ray worker: `DocumentInput` in, `DocumentResult` out.

Lifecycle of one input: bytes (given, or read from a URI) -> a temp file
named like the original (so errors say "<file>: page N: ...") -> the
document function (`pipeline.process_document` unless a caller passes its
own) -> source_path/name/errors put back to the original path -> optional
write (`OutputStore`). A local path is converted in place, with no copy.

Nothing raises out of `convert_input`: an unreadable source or an exception
from the document function becomes a FAILURE result, like the runner's.
A crash of the whole process (segfault, os._exit, lost node) is Ray's to
retry: the task (or the actor's call) runs again, and because every write
is keyed by the document's name and atomic, the retry replaces, never adds.

`BatchConverter` is the Ray Data callable: a pyarrow batch of rows (`path`,
optionally `bytes`, `name`) -> a pyarrow batch, either full result rows (the
Parquet schema of `writers.parquet`) or short summary rows for the job.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from docpipe.config import ConvertOptions
from docpipe.schema import DocumentResult, Status
from docpipe.writers import files

DocumentFn = Callable[[str, ConvertOptions], DocumentResult]
SKIPPED = "skipped"  # summary status of a document whose content is already in the dataset

SUMMARY_FIELDS = ("name", "source_path", "doc_id", "status", "error", "num_pages", "num_pages_ok",
                  "num_pages_failed")


@dataclass
class DocumentInput:
    path: str  # local path or URI, as the user named it (becomes source_path)
    name: str = ""  # output stem; "" = the file's safe stem
    data: bytes | None = None  # the PDF's bytes when the caller has them; None = read from path


def failure_result(path: str, error: str, name: str = "") -> DocumentResult:
    """A document that produced nothing; name "" = the file's safe stem."""
    return DocumentResult(source_path=path, name=name or files.safe_stem(path), status=Status.FAILURE, error=error)


def _call(fn: DocumentFn, local: str, item: DocumentInput, opts: ConvertOptions) -> DocumentResult:
    try:
        result = fn(local, opts)
    except Exception as e:  # noqa: BLE001 - one bad document must not fail the task (and the job)
        return failure_result(item.path, f"{type(e).__name__}: {e}", item.name)
    if not isinstance(result, DocumentResult):
        return failure_result(item.path, f"internal error: the document function returned {type(result).__name__}",
                              item.name)
    return result


def _restore_path(result: DocumentResult, local: str, original: str) -> None:
    """Errors made on the temp copy name the original."""
    result.source_path = original
    result.error = result.error.replace(local, original)
    for page in result.pages:
        page.error = page.error.replace(local, original)


def convert_input(item: DocumentInput, opts: ConvertOptions, fn: DocumentFn | None = None) -> DocumentResult:
    """See the module doc; never raises for a bad document."""
    from docpipe.ray.storage import is_uri, read_bytes

    if fn is None:
        from docpipe.pipeline import process_document as fn
    if item.data is None and not is_uri(item.path):
        result = _call(fn, item.path, item, opts)
    else:
        try:
            data = item.data if item.data is not None else read_bytes(item.path)
        except OSError as e:
            return failure_result(item.path, f"{item.path}: cannot be read ({e})", item.name)
        folder = tempfile.mkdtemp(prefix="docpipe-ray-")
        try:
            local = os.path.join(folder, Path(item.path.rstrip("/")).name or "document.pdf")
            with open(local, "wb") as f:
                f.write(data)
            result = _call(fn, local, item, opts)
            _restore_path(result, local, item.path)
        finally:
            shutil.rmtree(folder, ignore_errors=True)
    result.source_path = item.path
    result.name = item.name or files.safe_stem(item.path)
    return result


def content_id(item: DocumentInput) -> str:
    """sha256 of the bytes (the result's doc_id), "" when they cannot be read."""
    from docpipe.ray.storage import read_bytes

    try:
        data = item.data if item.data is not None else read_bytes(item.path)
    except OSError:
        return ""
    return hashlib.sha256(data).hexdigest()


def summary_row(result: DocumentResult) -> dict:
    return {"name": result.name, "source_path": result.source_path, "doc_id": result.doc_id,
            "status": getattr(result.status, "value", result.status), "error": result.error,
            "num_pages": result.num_pages, "num_pages_ok": sum(1 for p in result.pages if p.ok),
            "num_pages_failed": sum(1 for p in result.pages if not p.ok)}


def skipped_row(item: DocumentInput, doc_id: str, owner: str) -> dict:
    return {"name": item.name, "source_path": item.path, "doc_id": doc_id, "status": SKIPPED,
            "error": f"same content (doc_id {doc_id[:12]}...) already in the dataset as {owner!r}",
            "num_pages": 0, "num_pages_ok": 0, "num_pages_failed": 0}


def inputs_of(batch) -> list[DocumentInput]:
    """Rows of a pyarrow batch with `path` and/or `bytes` (and optional `name`)."""
    cols = set(batch.column_names)
    if not cols & {"path", "bytes"}:
        raise ValueError(f"a document dataset needs a 'path' or 'bytes' column, got {sorted(cols)}")
    rows = batch.to_pylist()
    items = []
    for i, row in enumerate(rows):
        path = row.get("path") or f"document-{i}.pdf"
        items.append(DocumentInput(path=path, name=row.get("name") or "", data=row.get("bytes")))
    return items


class BatchConverter:
    """Ray Data callable (see module doc). `store`: write each document there
    and return summary rows; None: return full result rows and write nothing.
    `done_ids` (doc_id -> name): content already in the dataset is skipped."""

    def __init__(self, opts: ConvertOptions, store=None, done_ids: dict | None = None,
                 fn: DocumentFn | None = None):
        self.opts, self.store, self.done_ids, self.fn = opts, store, done_ids or {}, fn

    def __call__(self, batch):
        import pyarrow as pa

        from docpipe.writers import parquet

        results, summaries = [], []
        for item in inputs_of(batch):
            if self.done_ids:
                doc_id = content_id(item)
                owner = self.done_ids.get(doc_id)
                if owner is not None and owner != item.name:
                    summaries.append(skipped_row(item, doc_id, owner))
                    continue
            result = convert_input(item, self.opts, self.fn)
            if self.store is not None:
                self.store.write(result, self.opts)
                summaries.append(summary_row(result))
            else:
                results.append(result)
        if self.store is None:
            return parquet.to_table(results, self.opts.table_format)
        return pa.Table.from_pylist(summaries, schema=summary_schema())


def summary_schema():
    import pyarrow as pa

    types = {"num_pages": pa.int32(), "num_pages_ok": pa.int32(), "num_pages_failed": pa.int32()}
    return pa.schema([(f, types.get(f, pa.string())) for f in SUMMARY_FIELDS])
