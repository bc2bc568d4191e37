"""A batch of good and bad PDFs through the worker pool: exactly one result
per source, every failure names its file, the good ones convert."""
from __future__ import annotations

import pymupdf
from pdf_factory import set_media_box, write_pages, zero_page_pdf

from docpipe.config import ConvertOptions
from docpipe.ingest.errors import PdfError
from docpipe.ingest.pages import parse_page_ranges
from docpipe.ingest.pdf import open_pdf
from docpipe.ingest.render import prefetch_pages
from docpipe.ingest.sources import discover
from docpipe.runner import failure, report_pages, run_documents
from docpipe.schema import DocumentResult, PageResult, Status


def render_document(source: str, opts: ConvertOptions) -> DocumentResult:
    """A minimal document function: validate, render the selected pages, keep their sizes."""
    try:
        doc = open_pdf(source, opts.password, opts.max_page_side_pt)
    except PdfError as e:
        return failure(source, str(e))
    with doc:
        pages = []
        for rendered in prefetch_pages(doc, parse_page_ranges(opts.pages, doc.page_count), dpi=opts.dpi):
            page = doc[rendered.page_idx]  # safe: the prefetcher has finished with this page
            pages.append(PageResult(rendered.page_idx, page.rect.width, page.rect.height,
                                    error=str(rendered.error or "")))
            report_pages(1)
        return DocumentResult(source_path=source, name="", num_pages=doc.page_count, pages=pages)


def test_good_and_bad_pdfs_each_yield_one_result(tmp_path):
    folder = tmp_path / "in"
    folder.mkdir()
    good = [write_pages(folder / f"good{i}.pdf", [(300, 400)] * 4) for i in range(3)]
    (folder / "text.pdf").write_text("not a pdf")
    data = open(good[0], "rb").read()
    (folder / "cut.pdf").write_bytes(data[: len(data) // 2])
    zero_page_pdf(folder / "zero.pdf")
    set_media_box(write_pages(folder / "giant.pdf", [(300, 400)] * 2), 1, "[0 0 99999 10]")
    pymupdf.open(good[0]).save(str(folder / "locked.pdf"), encryption=pymupdf.PDF_ENCRYPT_AES_256, user_pw="pw")

    sources = discover([str(folder), str(tmp_path / "missing.pdf")])
    runnable = [s.path for s in sources if s.ok]
    pages_done = []
    opts = ConvertOptions(workers=2, dpi=72, pages="2-", timeout_s=60)
    results = {r.source_path: r for r in run_documents(runnable, render_document, opts, on_pages=pages_done.append)}

    assert sorted(results) == sorted(runnable) and len(runnable) == 8
    assert [s.error for s in sources if not s.ok] == ["file or folder not found"]
    for path in good:
        assert results[path].status is Status.SUCCESS
        assert [p.page_idx for p in results[path].pages] == [1, 2, 3]
    failed = {path: r.error for path, r in results.items() if r.status is Status.FAILURE}
    assert set(failed) == set(runnable) - set(good)
    assert all(error.startswith(path + ": ") for path, error in failed.items())
    assert failed[str(folder / "giant.pdf")].startswith(f"{folder / 'giant.pdf'}: page 2: absurd page size")
    assert "password required" in failed[str(folder / "locked.pdf")]
    assert sum(pages_done) == 9
