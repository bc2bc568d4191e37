"""The document worker pool: one result per source, and a bad document
(slow, crashing, memory-hungry) costs only itself."""
from __future__ import annotations

import os
import signal
import time
from collections import Counter

import pytest

from docpipe.config import ConvertOptions
from docpipe.runner import report_pages, run_documents
from docpipe.schema import DocumentResult, PageResult, Status


# Worker functions: top level so that spawned workers can unpickle them.
# A source's name says how the fake conversion behaves.
def fake_convert(source: str, opts: ConvertOptions) -> DocumentResult:
    if "sleep" in source:
        time.sleep(30)
    if "segv" in source:
        os.kill(os.getpid(), signal.SIGSEGV)
    if "exit" in source:
        os._exit(3)
    if "hog" in source:
        hog = bytearray(2 * opts.max_memory_mb * 1024 * 1024)  # twice the limit: must fail
        return DocumentResult(source_path=source, name="hog", error=str(len(hog)))
    if "raise" in source:
        raise ValueError(f"cannot parse {source}")
    pages = [PageResult(page_idx=i, width_pt=612, height_pt=792) for i in range(3)]
    report_pages(2)  # the last page is left to the end-of-document top-up
    return DocumentResult(source_path=source, name=source, pages=pages, markdown=f"# {source}\n", num_pages=3)


def _run(sources, **opts):
    options = ConvertOptions(**{"workers": 2, "timeout_s": 20, "max_memory_mb": 1024, **opts})
    return list(run_documents(sources, fake_convert, options))


def _by_source(results):
    return {r.source_path: r for r in results}


def test_good_documents_convert_with_progress():
    pages = []
    sources = [f"doc{i}.pdf" for i in range(5)]
    results = list(run_documents(sources, fake_convert, ConvertOptions(workers=2), on_pages=pages.append))
    assert sorted(r.source_path for r in results) == sources
    assert all(r.status is Status.SUCCESS and r.markdown == f"# {r.source_path}\n" for r in results)
    assert sum(pages) == 15 and set(pages) == {1, 2}  # 2 reported live + 1 topped up, per document


def test_duplicate_sources_each_yield_one_result():
    results = _run(["a.pdf", "a.pdf", "b.pdf"], workers=1)
    assert Counter(r.source_path for r in results) == {"a.pdf": 2, "b.pdf": 1}


def test_timeout_kills_the_document_and_the_next_one_converts():
    start = time.monotonic()
    results = _by_source(_run(["sleep.pdf", "after.pdf"], workers=1, timeout_s=1.5))
    assert time.monotonic() - start < 20  # did not wait for the 30 s sleep
    assert results["sleep.pdf"].status is Status.FAILURE
    assert results["sleep.pdf"].error == "timed out after 1.5 s"
    assert results["after.pdf"].status is Status.SUCCESS


def test_crashing_workers_are_replaced_and_others_succeed():
    sources = ["a.pdf", "segv.pdf", "b.pdf", "exit.pdf", "c.pdf"]
    results = _by_source(_run(sources, workers=2))
    assert set(results) == set(sources) and len(results) == len(sources)
    assert results["segv.pdf"].status is Status.FAILURE
    assert results["segv.pdf"].error == "worker crashed (signal 11: SIGSEGV)"
    assert results["exit.pdf"].error == "worker crashed (exit code 3)"
    assert all(results[s].status is Status.SUCCESS for s in ("a.pdf", "b.pdf", "c.pdf"))


def test_memory_limit_fails_cleanly_and_the_next_document_converts():
    results = _by_source(_run(["hog.pdf", "after.pdf"], workers=1, max_memory_mb=512))
    assert results["hog.pdf"].status is Status.FAILURE
    assert results["hog.pdf"].error == "out of memory (limit 512 MB)"
    assert results["after.pdf"].status is Status.SUCCESS


def test_exception_becomes_failure_naming_the_source():
    results = _by_source(_run(["raise.pdf", "ok.pdf"], workers=1))
    assert results["raise.pdf"].error == "ValueError: cannot parse raise.pdf"
    assert results["ok.pdf"].status is Status.SUCCESS


def test_more_workers_than_documents_and_no_documents():
    assert [r.source_path for r in _run(["only.pdf"], workers=4)] == ["only.pdf"]
    assert _run([], workers=2) == []


def test_in_process_mode_runs_fn_here():
    pages = []
    results = list(run_documents(["x.pdf", "raise.pdf"], fake_convert, ConvertOptions(),
                                 on_pages=pages.append, in_process=True))
    assert [r.status for r in results] == [Status.SUCCESS, Status.FAILURE]
    assert sum(pages) == 3


def test_unpicklable_fn_is_refused_up_front():
    with pytest.raises(TypeError, match="picklable"):
        run_documents(["a.pdf"], lambda s, o: None, ConvertOptions())
