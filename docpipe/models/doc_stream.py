"""Several documents through one page scheduler: the VLM path of a batch.

    stream_documents(sources, opts, on_pages=None) -> Iterator[DocumentResult]

One DocumentResult per source, in input order, each as soon as its last page
(and every page before it in the stream) is done; the engine stays full
across document boundaries because the scheduler's job source runs on into
the next document while the previous one's block requests still decode.

Queues: DocumentFeed (render thread: open -> hash -> render ahead, across
documents) -> `_Jobs` (the scheduler's job source: documents seen, pages in
flight) -> PageScheduler (at most `vlm_window_pages` pages in flight, results
in job order) -> `_Stream.on_page` (page into its document; a complete
document is assembled and yielded).

Bounds: pages in flight (`vlm_window_pages`), renders waiting
(`vlm_prefetch_pages`), documents with pages in flight or waiting
(`vlm_max_open_docs`): the job source answers HOLD rather than starting
another document, and rather than blocking on a render that is not done;
with nothing in flight the scheduler waits on the feed's `ready` event, for
at most `vlm_hold_timeout_s` (default 600 s): a render stuck longer fails
the documents left with a HoldTimeout naming the last document seen.

Errors, per document as in `pipeline.process_document`: a document that
cannot be opened is a FAILURE result naming the file; a page that fails
(render, a request, parsing) is a failed page naming file and page. A
runner failure (an engine step raising) fails the pages in flight with its
reason, aborts their requests, and the stream goes on with the next pages.
A model that cannot be loaded fails every document with the reason.

Threads: the caller's thread runs the scheduler and the engine; MuPDF runs
on the feed's thread only; requests are prepared and block requests built
on the runner's and the scheduler's preparation threads (prep.py), which a
runner failure's `close()` and the scheduler's end join.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator

from docpipe.config import ConvertOptions
from docpipe.models.backend import open_runner, prefetch_pages_of
from docpipe.models.base import get_family
from docpipe.models.doc_feed import FEED_END, DocumentFeed, OpenedDoc
from docpipe.ingest.ahead import HoldTimeout
from docpipe.models.scheduler import (DEFAULT_HOLD_TIMEOUT_S, DEFAULT_WINDOW_PAGES, HOLD, PageFlow, PageJob,
                                      PageScheduler)
from docpipe.models.vlm_page import DEFAULT_FAMILY
from docpipe.schema import DocumentResult, PageResult, Status

DEFAULT_MAX_OPEN_DOCS = 16  # enough for a window of one-page documents; each holds its finished pages


class _Jobs:
    """The scheduler's job source over the feed (see module doc)."""

    def __init__(self, feed: DocumentFeed, max_open_docs: int):
        assert max_open_docs >= 1, "max_open_docs must be at least 1"
        self.feed, self.max_open_docs = feed, max_open_docs
        self.docs: deque[OpenedDoc] = deque()  # seen, not yet yielded, input order
        self.in_flight: deque[PageJob] = deque()  # handed to the scheduler, no result yet, in order
        self.num_seen = 0  # documents taken from the feed
        self.error: BaseException | None = None  # the feed broke: nothing more will come
        self._held = None  # an item taken from the feed but not admitted yet
        self._ended = False
        self._hold = HOLD.until(feed.ready, self._waiting_for())  # answered while the feed has nothing

    def __iter__(self) -> "_Jobs":
        return self

    def __next__(self):
        while True:
            if self._ended:
                raise StopIteration
            item, self._held = self._held, None
            if item is None:
                try:
                    item = self.feed.get()
                except Exception as e:  # noqa: BLE001 - the stream reports it on the documents left
                    self.error, self._ended = e, True
                    raise
            if item is None:  # the next render is not done: the engine steps meanwhile, or (nothing in
                # flight) the scheduler waits on the feed, for at most its hold timeout
                return self._hold
            if item is FEED_END:
                self._ended = True
                raise StopIteration
            if isinstance(item, OpenedDoc):
                if item.page_indices and self.in_flight and self._num_open() >= self.max_open_docs:
                    self._held = item
                    return HOLD
                self.docs.append(item)
                self.num_seen += 1
                self._hold = HOLD.until(self.feed.ready, self._waiting_for())  # made per document, not per poll
                continue
            self.in_flight.append(item)
            return item

    def _num_open(self) -> int:
        return sum(1 for d in self.docs if not d.is_complete)

    def _waiting_for(self) -> str:
        last = self.docs[-1].result.source_path if self.docs else None
        return f"the document feed (open and render; last document seen: {last})" if last else "the document feed"


class _Stream:
    """Pages into documents; complete documents out, in input order."""

    def __init__(self, jobs: _Jobs, opts: ConvertOptions, on_pages: Callable[[int], None] | None):
        self.jobs, self.opts, self.on_pages = jobs, opts, on_pages

    def on_page(self, page: PageResult) -> Iterator[DocumentResult]:
        job = self.jobs.in_flight.popleft()
        assert page.page_idx == job.page_idx, f"result for page {page.page_idx}, expected {job.page_idx}"
        job.doc.pages.append(page)
        if self.on_pages is not None:
            self.on_pages(1)
        yield from self.pop_complete()

    def fail_in_flight(self, done: list[PageResult | None], reason: str) -> Iterator[DocumentResult]:
        """Pages handed to a scheduler that raised: those it had finished (`done`,
        in job order) are kept, every other one fails with `reason`."""
        done = done + [None] * (len(self.jobs.in_flight) - len(done))
        for page in done[:len(self.jobs.in_flight)]:
            job = self.jobs.in_flight[0]
            if page is None:
                page = PageResult(job.page_idx, job.width_pt, job.height_pt, source="none",
                                  error=f"page {job.page_idx + 1}: {reason}")
                page.timings_s.update(job.timings_s)
            yield from self.on_page(page)

    def pop_complete(self) -> Iterator[DocumentResult]:
        while self.jobs.docs and self.jobs.docs[0].is_complete:
            yield self._finish(self.jobs.docs.popleft())

    def drain(self, sources: list[str], reason: str) -> Iterator[DocumentResult]:
        """After the feed broke: documents seen get their missing pages failed, unseen ones fail."""
        for doc in self.jobs.docs:
            done = {p.page_idx for p in doc.pages}
            doc.pages += [PageResult(i, 0.0, 0.0, source="none", error=f"page {i + 1}: {reason}")
                          for i in doc.page_indices if i not in done]
        yield from self.pop_complete()
        for source in sources[self.jobs.num_seen:]:
            yield _failure(source, self.opts, f"not converted: {reason}")

    def _finish(self, doc: OpenedDoc) -> DocumentResult:
        from docpipe.pipeline import finish_document, page_error

        result, timings = doc.result, doc.result.timings_s
        if doc.page_indices:
            for page in doc.pages:
                if page.error:
                    page.error = page_error(result.source_path, page.page_idx, page.error)
            timings["extract_s"] = time.perf_counter() - doc.started_s - timings.get("open_s", 0.0)
            finish_document(result, sorted(doc.pages, key=lambda p: p.page_idx), self.opts)
            timings["total_s"] = time.perf_counter() - doc.started_s
        return result


def _failure(source: str, opts: ConvertOptions, why: str) -> DocumentResult:
    from docpipe.pipeline import _label
    from docpipe.runner import failure

    return failure(source, f"{_label(source)}: {why}", opts.effective_backend)


def stream_documents(sources: Iterable[str], opts: ConvertOptions, on_pages: Callable[[int], None] | None = None,
                     runner=None, flow: PageFlow | None = None) -> Iterator[DocumentResult]:
    """See the module doc. `runner`/`flow` replace the model's (benchmarks); a
    runner given here is not closed here."""
    sources = list(sources)
    if not sources:
        return
    family_name = opts.extra.get("vlm_family", DEFAULT_FAMILY)
    flow = flow or PageFlow(get_family(family_name))
    own_runner = runner is None
    if own_runner:
        try:
            runner = open_runner(opts, family_name)
        except Exception as e:  # noqa: BLE001 - a model that cannot load fails the documents, not the caller
            for source in sources:
                yield _failure(source, opts, f"VLM {flow.family.name}: cannot start model {opts.model!r}: "
                                             f"{type(e).__name__}: {e}")
            return
    window = int(opts.extra.get("vlm_window_pages", DEFAULT_WINDOW_PAGES))
    max_open = int(opts.extra.get("vlm_max_open_docs", DEFAULT_MAX_OPEN_DOCS))
    hold_timeout_s = float(opts.extra.get("vlm_hold_timeout_s", DEFAULT_HOLD_TIMEOUT_S))
    hybrid = opts.effective_backend == "hybrid"
    try:
        with DocumentFeed(sources, opts, hybrid, prefetch_pages_of(opts)) as feed:
            jobs = _Jobs(feed, max_open)
            stream = _Stream(jobs, opts, on_pages)
            while True:
                scheduler = PageScheduler(runner, flow, window, hold_timeout_s=hold_timeout_s)
                try:
                    for page in scheduler.run(jobs):
                        yield from stream.on_page(page)
                    break
                except Exception as e:  # noqa: BLE001 - the pages in flight fail; later pages go on
                    _abort(runner)
                    reason = f"VLM {flow.family.name}: {type(e).__name__}: {e}"
                    yield from stream.fail_in_flight(scheduler.unfinished(), reason)
                    if isinstance(e, HoldTimeout):  # the feed is stuck: nothing more will come
                        jobs.error = e
                    if jobs.error is not None:
                        break
            yield from stream.pop_complete()
            if jobs.error is not None or jobs.docs or jobs.num_seen < len(sources):
                why = f"{type(jobs.error).__name__}: {jobs.error}" if jobs.error else "the document feed ended early"
                yield from stream.drain(sources, why)
    finally:
        if own_runner:
            _abort(runner)


def _abort(runner) -> None:
    """Free the engine of whatever is still in flight (a reused engine starts empty)."""
    close = getattr(runner, "close", None)
    if close is not None:
        close()
