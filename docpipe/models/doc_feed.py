"""The render side of the several-document VLM stream: one background thread
opens, validates, hashes and renders the batch's documents in input order,
rendering ahead across document boundaries, so the scheduler's engine never
waits for the next document's first page.

Items, in order, through a queue bounded by `window` entries:
  `OpenedDoc` (every source, also those that cannot be converted: their
  result is already a FAILURE and they expect no pages) -> its `PageJob`s
  (`job.doc` is the OpenedDoc; a page that failed to render carries its
  error) -> ... next document ... -> `FEED_END`.

Threads: all MuPDF work on a document (open, page tree checks, render, text
layer, close) happens on this thread and its per-document render helper
(`backend.page_jobs`), one after the other, never while the consumer runs
MuPDF (it does not). A document is closed as soon as its last page is
rendered, so at most one document is open in MuPDF at a time.

Errors: what `pipeline.open_document` reports (bad PDF, bad page range) is
the OpenedDoc's failure; an exception while rendering a document turns its
remaining pages into failed jobs ("not converted: rendering stopped at page
N") and the next document goes on. `close()` stops the thread early (the
consumer stopped, or failed) and waits for it (a thread stuck in a render is
left behind after a while). `ready` is set after every item and at the
thread's end, so a consumer with nothing else to do waits on it.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass, field

from docpipe.config import ConvertOptions
from docpipe.ingest.ahead import Handoff
from docpipe.models.scheduler import PageJob
from docpipe.schema import DocumentResult

FEED_END = object()  # no document follows
log = logging.getLogger(__name__)


@dataclass(eq=False)
class OpenedDoc:
    """A document as the stream tracks it, from open to its last page."""

    index: int  # position in the batch's input order
    result: DocumentResult  # filled as pages arrive; FAILURE already when it cannot be converted
    page_indices: list[int]  # pages selected for conversion (empty when it failed to open)
    started_s: float  # perf_counter when the feed began opening it
    pages: list = field(default_factory=list)  # PageResults received so far, in page order

    @property
    def is_complete(self) -> bool:
        return len(self.pages) == len(self.page_indices)


class DocumentFeed:
    """Renders `sources` ahead on one thread (see module doc)."""

    def __init__(self, sources: Iterable[str], opts: ConvertOptions, hybrid: bool, window: int):
        assert window >= 1, "the feed needs room for at least one item"
        self.sources, self.opts, self.hybrid = list(sources), opts, hybrid
        self._thread = threading.Thread(target=self._produce, name="docpipe-doc-feed", daemon=True)
        self._handoff = Handoff(window, self._thread, "the document feed's thread ended without its end marker")
        # set after every item and when the thread ends: a consumer holding on an empty queue waits on it
        self.ready = self._handoff.ready

    def __enter__(self) -> "DocumentFeed":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def get(self):
        """The next item, never waiting; None when nothing is ready (then `ready` is set
        when that changes). An exception the thread could not attribute to a document is
        raised here, as is the thread's end without its end marker."""
        item = self._handoff.poll()
        return None if item is Handoff.EMPTY else item

    def close(self, join_s: float = 30.0) -> None:
        """Stop and join the thread; one stuck in a render (a hold timeout's cause) is left
        behind after join_s (a daemon: it does not keep the process alive)."""
        self._handoff.close(join_s)
        if self._thread.is_alive():
            log.warning("the document feed's thread is still in a render after %.0f s; left behind", join_s)

    def _produce(self) -> None:
        with self._handoff.producing():  # a bug here: the consumer re-raises it rather than waiting forever
            for index, source in enumerate(self.sources):
                if not self._feed_document(index, source):
                    return
            self._handoff.put(FEED_END)

    def _feed_document(self, index: int, source: str) -> bool:
        from docpipe.models.backend import page_jobs
        from docpipe.pipeline import open_document

        started_s = time.perf_counter()
        doc, result, indices = open_document(source, self.opts)
        if doc is None:
            result.timings_s["total_s"] = time.perf_counter() - started_s
        opened = OpenedDoc(index, result, indices, started_s)
        if not self._handoff.put(opened):
            if doc is not None:
                doc.close()
            return False
        if doc is None:
            return True
        done = 0
        # the inner render thread keeps one page ahead; this queue holds the rest of the window
        jobs = page_jobs(doc, indices, self.opts, self.hybrid, window=1)
        try:
            for job in jobs:
                job.doc = opened
                if not self._handoff.put(job):
                    return False
                done += 1
        except Exception as e:  # noqa: BLE001 - this document's remaining pages fail, the batch goes on
            for n, idx in enumerate(indices[done:]):
                why = f"{type(e).__name__}: {e}" if n == 0 else (
                    f"not converted: rendering stopped at page {indices[done] + 1}")
                if not self._handoff.put(PageJob(idx, 0.0, 0.0, None, error=why, doc=opened)):
                    return False
        finally:
            jobs.close()  # joins the render helper before the document goes away
            doc.close()
        return True
