"""`docpipe bench pipeline --pages P --docs N`: the mineru-synthetic pages
split over N generated PDFs and run through the convert path's document
stream (`docpipe.models.doc_stream.stream_documents`: one render thread
across documents, one page scheduler, per-document assembly), so the
measurement includes what crosses document boundaries: opening and hashing
each file, rendering ahead into the next document, and the engine staying
full while a document finishes.

Work per page is the synthetic workload's, exactly as without --docs: the
layout request runs on the page's render (resized to 1036x1036 like every
layout image: the same 1369 image tokens) with its forced output length,
then the page's planned block requests (noise crops of the workload's
sizes). Pages are numbered across documents in input order, so page k of
the workload is the same work whatever N is. Outputs are assembled in
memory, not written.
"""
from __future__ import annotations

from pathlib import Path

from docpipe.bench.pipeline_jobs import BenchFlow
from docpipe.bench.workload import mineru_synthetic
from docpipe.config import ConvertOptions
from docpipe.models.base import LayoutBlock
from docpipe.schema import PageResult

PAGE_SIZE_PT = (612.0, 792.0)  # US Letter, like the synthetic page jobs


def split_pages(num_pages: int, num_docs: int) -> list[int]:
    """Pages per document: as even as possible, the first documents one longer."""
    assert 1 <= num_docs <= num_pages, "need at least one page per document"
    base, extra = divmod(num_pages, num_docs)
    return [base + (i < extra) for i in range(num_docs)]


def write_pdfs(folder: Path, num_pages: int, num_docs: int) -> list[Path]:
    """num_docs PDFs of plain one-line pages, num_pages in all."""
    import pymupdf

    paths, page = [], 0
    for i, count in enumerate(split_pages(num_pages, num_docs)):
        doc = pymupdf.open()
        for _ in range(count):
            doc.new_page(width=PAGE_SIZE_PT[0], height=PAGE_SIZE_PT[1]).insert_text(
                (72, 72), f"synthetic page {page}", fontsize=11)
            page += 1
        paths.append(folder / f"doc{i:04d}.pdf")
        doc.save(paths[-1])
        doc.close()
    return paths


class DocsFlow(BenchFlow):
    """The bench flow planning each streamed page from the workload (the
    stream's jobs come from PDFs and carry no plan)."""

    def __init__(self, *args, pages_per_doc: list[int], **kwargs):
        super().__init__(*args, **kwargs)
        self.offsets = [sum(pages_per_doc[:i]) for i in range(len(pages_per_doc))]
        self.work = mineru_synthetic(sum(pages_per_doc), self.seed)

    def layout_request(self, job):
        if job.doc is None:  # a synthetic job (warm-up): planned already
            return super().layout_request(job)
        page = self.offsets[job.doc.index] + job.page_idx  # the workload's page number
        reqs = self.work[page]
        job.plan = {"doc": "synthetic", "page": page, "synthetic": reqs[1:], "layout_tokens": reqs[0].output_tokens,
                    "blocks": [LayoutBlock(r.kind, (0.0, 0.0, 1.0, 1.0)) for r in reqs[1:]]}
        return super().layout_request(job)


def stream_pages(pdfs: list[Path], runner, flow, window: int) -> tuple[list[PageResult], int]:
    """(every page's result, number of documents) of one pass through the document stream."""
    from docpipe.models.doc_stream import stream_documents

    opts = ConvertOptions(backend="vlm", model="bench", formats="md,json",
                          extra={"vlm_window_pages": window, "vlm_max_open_docs": max(window, 1)})
    results = list(stream_documents([str(p) for p in pdfs], opts, runner=runner, flow=flow))
    failed = [r.error for r in results if not r.pages]
    if failed:
        raise RuntimeError(f"bench documents failed: {failed[:3]}")
    return [p for r in results for p in r.pages], len(results)
