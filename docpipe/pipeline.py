"""One document, start to finish, inside a worker: `process_document`.

Lifecycle: open + validate (ingest) -> hash bytes (doc_id) -> select pages ->
backend `extract_pages` yields PageResults -> name image crops by content hash
-> assemble Markdown and content_list -> DocumentResult with status and
timings. Nothing raises out of `process_document`: a document that cannot be
opened is a FAILURE result naming the file; a page that fails is kept as a
PageResult with its error (naming file and page) and the document is PARTIAL;
an exception in the middle of extraction keeps every page finished before it.

Backends are looked up by name and imported lazily, so a missing VLM stack
fails only when chosen, with "VLM backend not available: <reason>".

The batch loop over many documents lives in docpipe/batch.py.
"""
from __future__ import annotations

import hashlib
import importlib
import time
from pathlib import Path

from docpipe.config import ConvertOptions
from docpipe.schema import DocumentResult, PageResult, Status
from docpipe.writers.content_list import build_content_list
from docpipe.writers.markdown import render_markdown

# effective backend -> module exposing extract_pages(doc, page_indices, opts)
BACKEND_MODULES = {
    "pipeline": "docpipe.text.backend",
    "vlm": "docpipe.models.backend",
    "hybrid": "docpipe.models.backend",
}
_MAX_ERRORS_LISTED = 5


class BackendUnavailable(RuntimeError):
    """The chosen backend cannot run here; the message says why."""


def load_extractor(opts: ConvertOptions):
    """The chosen backend's extract_pages, or BackendUnavailable."""
    backend = opts.effective_backend
    module = BACKEND_MODULES[backend]
    label = "VLM" if backend in ("vlm", "hybrid") else "pipeline"
    try:
        mod = importlib.import_module(module)
    except ImportError as e:
        raise BackendUnavailable(f"{label} backend not available: {e}") from e
    fn = getattr(mod, "extract_pages", None)
    if fn is None:
        raise BackendUnavailable(f"{label} backend not available: {module} has no extract_pages")
    return fn


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def _label(source: str) -> str:
    return Path(source).name


def page_error(source: str, page_idx: int, error: str) -> str:
    """Page errors always name the file and the 1-based page:
    "<file>: page N: <reason>" (backends may already say "page N: ...")."""
    page = f"page {page_idx + 1}: "
    if error.startswith(f"{_label(source)}: {page}"):
        return error
    return f"{_label(source)}: {error if error.startswith(page) else page + error}"


def _name_images(pages: list[PageResult]) -> None:
    """Content-hash names (MinerU's convention), always ours: the file writer
    saves the bytes under exactly this relative path."""
    for block in (b for p in pages for b in p.blocks):
        if block.image:
            block.img_path = f"images/{hashlib.sha256(block.image).hexdigest()}.png"


def assemble_markdown(pages: list[PageResult], table_format: str) -> str:
    """Pages' Markdown in order; a failed page leaves a visible comment so a
    partial document never silently looks complete."""
    parts = []
    for page in pages:
        if page.ok:
            md = render_markdown([page], table_format).strip()
        else:
            md = f"<!-- docpipe: page {page.page_idx + 1} failed: {page.error} -->"
        if md:
            parts.append(md)
    return "\n\n".join(parts) + "\n" if parts else ""


def _extract(result: DocumentResult, doc, indices: list[int], opts: ConvertOptions) -> list[PageResult]:
    """Run the backend; an exception mid-way keeps the pages done before it."""
    from docpipe.runner import report_pages

    source = result.source_path
    pages: list[PageResult] = []
    try:
        for page in load_extractor(opts)(doc, indices, opts):
            if page.error:
                page.error = page_error(source, page.page_idx, page.error)
            pages.append(page)
            report_pages(1)  # live pages/s in the CLI on long documents
    except BackendUnavailable:
        raise
    except Exception as e:  # noqa: BLE001 - one bad page must not lose the others
        done = {p.page_idx for p in pages}
        missing = [i for i in indices if i not in done]
        for n, idx in enumerate(missing):
            why = f"{type(e).__name__}: {e}" if n == 0 else (
                f"not converted: extraction stopped at page {missing[0] + 1}")
            pages.append(PageResult(idx, *_page_size(doc, idx), source="none",
                                    error=page_error(source, idx, why)))
        pages.sort(key=lambda p: p.page_idx)
    return pages


def _page_size(doc, idx: int) -> tuple[float, float]:
    try:
        rect = doc[idx].rect
        return rect.width, rect.height
    except Exception:  # noqa: BLE001 - the page is already being reported as failed
        return 0.0, 0.0


def _status(pages: list[PageResult]) -> tuple[Status, str]:
    errors = [p.error for p in pages if not p.ok]
    if not pages:
        return Status.FAILURE, "no pages converted"
    if not errors:
        return Status.SUCCESS, ""
    listed = "; ".join(errors[:_MAX_ERRORS_LISTED])
    if len(errors) > _MAX_ERRORS_LISTED:
        listed += f"; and {len(errors) - _MAX_ERRORS_LISTED} more failed pages"
    return (Status.FAILURE if len(errors) == len(pages) else Status.PARTIAL), listed


def open_document(source: str, opts: ConvertOptions):
    """(doc, result, page indices): the validated document, its result so far
    (doc_id, num_pages, timings open_s) and the selected pages; or (None, a
    FAILURE result naming the file, []) when it cannot be converted at all."""
    from docpipe.ingest.errors import PdfError
    from docpipe.ingest.pages import parse_page_ranges
    from docpipe.ingest.pdf import open_pdf

    t_start = time.perf_counter()
    result = DocumentResult(source_path=source, name=Path(source).stem, backend=opts.effective_backend)
    doc = None
    try:
        doc = open_pdf(source, opts.password, opts.max_page_side_pt)
        result.timings_s["open_s"] = time.perf_counter() - t_start
        result.doc_id = file_sha256(source)
        result.num_pages = doc.page_count
        return doc, result, parse_page_ranges(opts.pages, doc.page_count)
    except PdfError as e:
        result.error = str(e)
    except ValueError as e:  # parse_page_ranges
        result.error = f"{_label(source)}: bad page range: {e}"
    except Exception as e:  # noqa: BLE001 - anything the opener did not foresee
        result.error = f"{_label(source)}: cannot open: {type(e).__name__}: {e}"
    if doc is not None:
        doc.close()
    result.status = Status.FAILURE
    return None, result, []


def finish_document(result: DocumentResult, pages: list[PageResult], opts: ConvertOptions) -> DocumentResult:
    """Name image crops, assemble Markdown and content_list, set status and per-stage
    page totals (e.g. pages.vlm_layout_s). Never raises: an error here keeps the pages."""
    result.pages = pages
    timings = result.timings_s
    try:
        t = time.perf_counter()
        _name_images(result.pages)
        result.markdown = assemble_markdown(result.pages, opts.table_format)
        result.content_list = build_content_list(result.pages)
        result.status, result.error = _status(result.pages)
        timings["assemble_s"] = time.perf_counter() - t
        for page in result.pages:
            for stage, secs in page.timings_s.items():
                key = f"pages.{stage.removesuffix('_s')}_s"
                timings[key] = timings.get(key, 0.0) + secs
    except Exception as e:  # noqa: BLE001 - keep the pages done so far; the runner would lose them
        result.status = Status.PARTIAL if any(p.ok for p in result.pages) else Status.FAILURE
        result.error = f"{_label(result.source_path)}: internal error after extraction: {type(e).__name__}: {e}"
    return result


def process_document(source: str, opts: ConvertOptions) -> DocumentResult:
    """Convert one PDF; never raises for a bad document (see module doc)."""
    t_start = time.perf_counter()
    doc, result, indices = open_document(source, opts)
    try:
        if doc is None:
            return result
        t = time.perf_counter()
        try:
            pages = _extract(result, doc, indices, opts)
        except BackendUnavailable as e:
            result.status, result.error = Status.FAILURE, f"{_label(source)}: {e}"
            return result
        result.timings_s["extract_s"] = time.perf_counter() - t
        return finish_document(result, pages, opts)
    finally:
        if doc is not None:
            doc.close()
        result.timings_s["total_s"] = time.perf_counter() - t_start
