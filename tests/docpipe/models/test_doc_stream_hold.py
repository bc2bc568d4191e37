"""A document stream whose render never comes back fails its documents with a clear reason after the
hold timeout (`vlm_hold_timeout_s`) instead of hanging; a slow render within the timeout is waited for."""
from __future__ import annotations

import threading
from pathlib import Path

from docpipe import batch
from docpipe.config import ConvertOptions
from docpipe.models import backend
from docpipe.schema import Status
from test_doc_stream import REPLAY, make_inputs


def _stalled_page_jobs(release: threading.Event, real):
    def page_jobs(doc, indices, opts, hybrid, window=1):
        release.wait(10)  # a render that hangs (until the test lets it go)
        yield from real(doc, indices, opts, hybrid, window=window)
    return page_jobs


def test_a_stuck_render_fails_the_documents_after_the_hold_timeout(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in")
    release = threading.Event()
    monkeypatch.setattr(backend, "page_jobs", _stalled_page_jobs(release, backend.page_jobs))
    timer = threading.Timer(1.5, release.set)  # lets the feed thread end, so the stream's close returns
    timer.start()
    try:
        opts = ConvertOptions(backend="vlm", model=REPLAY, extra={"vlm_hold_timeout_s": 0.3})
        results = list(batch.convert_iter([tmp_path / "in"], None, opts))
    finally:
        release.set()
        timer.cancel()
    assert [r.status for r in results] == [Status.FAILURE] * 3
    first = results[0]
    reason = (first.pages[0].error if first.pages else first.error) or ""
    assert "HoldTimeout" in reason and "document feed" in reason and "a.pdf" in reason, reason
    assert all(r.error.startswith(f"{name}.pdf: not converted: HoldTimeout") and not r.pages
               for name, r in zip("bc", results[1:]))


def test_a_slow_render_within_the_timeout_is_waited_for(tmp_path, monkeypatch):
    make_inputs(tmp_path / "in")
    release = threading.Event()
    monkeypatch.setattr(backend, "page_jobs", _stalled_page_jobs(release, backend.page_jobs))
    threading.Timer(0.3, release.set).start()
    opts = ConvertOptions(backend="vlm", model=REPLAY, extra={"vlm_hold_timeout_s": 30})
    results = list(batch.convert_iter([tmp_path / "in"], None, opts))
    assert [r.status for r in results] == [Status.SUCCESS, Status.PARTIAL, Status.SUCCESS]
