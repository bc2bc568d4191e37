"""Scheduling the two-step VLM flow across pages (and documents): keep the
engine full, stream each page's result when its last block is answered.

Queues, per page: rendered (prefetched ahead by the render thread) ->
admitted (layout request submitted) -> blocks (its block requests
submitted as soon as the layout answer is parsed, while later pages' layout
requests are still decoding) -> done (assembled) -> yielded, in input order.

At most `window_pages` pages are admitted and not yet yielded, so memory is
bounded whatever the document's length: a page holds its render only until
its block crops are cut, then only its crops and answers.

Jobs may come from several documents (`PageJob.doc` says which): the
scheduler does not care, so later documents' requests join the engine while
earlier ones finish. A job source may yield `HOLD` or a `Hold` bound to its
readiness (ahead.py) for "nothing ready now" (a render not done, too many
documents open): admission stops for this round and the runner is polled.
With no page in flight it waits (ahead.HoldWait: woken when the next job is
made, else short sleeps) and asks again; after `hold_timeout_s` (10 min) of
that, HoldTimeout names what it waited for and the last page admitted.

Runners turn requests into answers. `EngineRunner` (engine_client.py)
drives the engine one step per poll, so requests join the running batch
the moment they are submitted. `WaveRunner` wraps any VLMClient (replay,
recording, a transformers baseline): each poll sends everything pending as
one `generate` call (a wave); when a wave fails it is retried page by page,
so a failure (e.g. a replay miss) only fails the pages it belongs to.

Block requests (`flow.blocks` + `flow.block_requests`: parsing, crops of
the render, hybrid text) are built on a `PrepStage` (prep.py) thread when
the runner prepares on threads (`runner.prep_threads`, the EngineRunner's
$DOCPIPE_PREP_THREADS), else inline: the thread that steps the engine only
submits them. Pages' blocks come out of the stage in layout-answer order;
the flow's methods then run on two threads (the stage's and the caller's,
for `layout_request` and `finish`), so a flow must not share mutable state
between them unguarded.

Errors: a page that fails (render, layout parse, a request, assembly) is
yielded as PageResult(error="page N: VLM <family>: ...") and the rest goes
on; answers still in flight for it are dropped when they arrive.

Timings per page (`PageResult.timings_s`, wall seconds, overlapping across
pages): render, text (text-layer read, hybrid), vlm_layout (admitted ->
layout answer), vlm_blocks (layout answer -> last block answer), assemble.
"""
from __future__ import annotations

import time
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from typing import Protocol

from PIL import Image

from docpipe.ingest.ahead import Hold, HoldTimeout, HoldWait  # noqa: F401 - HoldTimeout: callers catch it here
from docpipe.models.base import LayoutBlock, ModelFamily, VLMClient, VLMRequest
from docpipe.models.engine_client import Finished
from inference.prep_stage import PrepStage
from docpipe.models.vlm_page import BlockRequest, TextForBBox, answers_for, finish_page, make_block_requests
from docpipe.schema import PageResult

DEFAULT_WINDOW_PAGES = 16  # ~13 requests a page: ~200 sequences in flight, enough to fill a GPU step
HOLD = Hold()  # a job source's "nothing ready yet" (see module doc)
DEFAULT_HOLD_TIMEOUT_S = 600.0  # holding this long with nothing in flight: the source is stuck, not slow


@dataclass(eq=False)
class PageJob:
    """One page handed to the scheduler."""

    page_idx: int  # 0-based index in its document
    width_pt: float  # page as displayed (the render's orientation), PDF points
    height_pt: float
    render: Image.Image | None  # 200-dpi RGB render; None when rendering failed
    error: str = ""  # why the page cannot be converted (render failure); "" when fine
    text_for_bbox: TextForBBox | None = None  # hybrid text-layer lookup, None = VLM for every block
    finalize: Callable[[PageResult], None] | None = None  # e.g. map boxes to the unrotated page
    timings_s: dict[str, float] = field(default_factory=dict)  # stages done before the scheduler (render, text)
    plan: object = None  # benchmark flows: what stands in for the layout answer
    doc: object = None  # the document the page belongs to (several-document streams); None otherwise


class PageFlow:
    """The per-page steps the scheduler calls; benchmarks override some."""

    def __init__(self, family: ModelFamily):
        self.family = family

    def layout_request(self, job: PageJob) -> VLMRequest:
        return self.family.layout_request(job.render)

    def blocks(self, job: PageJob, answer: str) -> list[LayoutBlock]:
        return self.family.parse_layout(answer)

    def block_requests(self, job: PageJob, blocks: list[LayoutBlock]) -> list[BlockRequest]:
        return make_block_requests(blocks, job.render, self.family, job.text_for_bbox)

    def finish(self, job: PageJob, blocks: list[LayoutBlock], answers: dict[int, str]) -> PageResult:
        page = finish_page(blocks, answers, job.page_idx, job.width_pt, job.height_pt, self.family)
        if job.finalize is not None:
            job.finalize(page)
        return page


class Runner(Protocol):
    def submit(self, tag: object, request: VLMRequest) -> None: ...
    def poll(self) -> list[Finished]: ...
    def has_pending(self) -> bool: ...


class WaveRunner:
    """Any VLMClient as a Runner: one `generate` call per poll (see module doc)."""

    def __init__(self, client: VLMClient):
        self.client = client
        self._pending: list[tuple[object, VLMRequest]] = []

    def submit(self, tag: object, request: VLMRequest) -> None:
        self._pending.append((tag, request))

    def has_pending(self) -> bool:
        return bool(self._pending)

    def poll(self) -> list[Finished]:
        wave, self._pending = self._pending, []
        try:
            return self._answer(wave)
        except Exception:  # isolate the failure: retry each page's requests on their own
            groups: dict[int, list[tuple[object, VLMRequest]]] = {}
            for item in wave:
                groups.setdefault(id(getattr(item[0], "page", item[0])), []).append(item)
            out = []
            for group in groups.values():
                try:
                    out += self._answer(group)
                except Exception as e:  # noqa: BLE001 - becomes the page's error
                    out += [Finished(tag, error=f"{type(e).__name__}: {e}") for tag, _ in group]
            return out

    def _answer(self, items: list[tuple[object, VLMRequest]]) -> list[Finished]:
        answers = self.client.generate([r for _, r in items])
        if len(answers) != len(items):
            raise RuntimeError(f"client returned {len(answers)} answers for {len(items)} requests")
        return [Finished(tag, answer) for (tag, _), answer in zip(items, answers)]


@dataclass(eq=False)
class _Page:
    """Scheduler state of one admitted page."""

    job: PageJob
    admitted_s: float  # perf_counter when its layout request was submitted
    blocks: list[LayoutBlock] = field(default_factory=list)
    breqs: list[BlockRequest] = field(default_factory=list)
    answers: dict[int, str] = field(default_factory=dict)  # block index -> answer
    layout_done_s: float = 0.0  # perf_counter when the layout answer arrived
    has_blocks: bool = False  # blocks and block requests built (their answers may be awaited)
    result: PageResult | None = None  # set when finished or failed


@dataclass(frozen=True, eq=False)
class _Tag:
    page: _Page
    block_idx: int  # -1 for the layout request


class PageScheduler:
    def __init__(self, runner: Runner, flow: PageFlow, window_pages: int = DEFAULT_WINDOW_PAGES,
                 block_threads: int | None = None, hold_timeout_s: float = DEFAULT_HOLD_TIMEOUT_S):
        assert window_pages >= 1, "window_pages must be at least 1"
        self.runner, self.flow, self.window_pages, self.hold_timeout_s = runner, flow, window_pages, hold_timeout_s
        self._window: deque[_Page] = deque()  # admitted, not yet yielded (the running `run`'s)
        threads = getattr(runner, "prep_threads", 0) if block_threads is None else block_threads
        # through a lambda: a wrapped `_build_blocks` (instance attribute, host_cost) is the one run
        self._blocks = PrepStage(lambda item: self._build_blocks(item), min(threads, 1), name="docpipe-blocks")

    def run(self, jobs: Iterable[PageJob]) -> Iterator[PageResult]:
        """PageResults in job order, each as soon as it and all before it are done."""
        try:
            yield from self._run(iter(jobs))
        finally:  # stopped early or failed: no block building left running
            self._blocks.close()

    def _run(self, jobs: Iterator[PageJob]) -> Iterator[PageResult]:
        self._window = window = deque()
        exhausted, holding = False, HoldWait(self.hold_timeout_s, "no page admitted yet")
        while True:
            while not exhausted and len(window) < self.window_pages:
                job = next(jobs, None)
                if job is None:
                    exhausted = True
                elif isinstance(job, Hold):
                    if window:
                        break
                    holding.wait(job)  # nothing in flight: the next job is being made on another thread
                else:
                    window.append(self._admit(job))
                    doc = getattr(getattr(job.doc, "result", None), "source_path", "")  # several-document streams
                    holding.reset(f"the last page admitted: page {job.page_idx + 1}{' of ' + doc if doc else ''}")
            while window and window[0].result is not None:
                yield window.popleft().result
            if not window:
                if exhausted:
                    return
                continue
            if not self.runner.has_pending():
                if not self._blocks.pending():
                    raise AssertionError("pages in flight but no request pending: scheduler state is inconsistent")
                self._take_blocks(wait=True)  # nothing else to do: the engine waits for these requests
                continue
            for done in self.runner.poll():
                self._on_finished(done)
            self._take_blocks()

    def unfinished(self) -> list[PageResult | None]:
        """After `run` raised: the pages it had admitted and not yielded, in job
        order, each its result when it had one (so a caller keeps finished pages)."""
        return [page.result for page in self._window]

    def _admit(self, job: PageJob) -> _Page:
        page = _Page(job, time.perf_counter())
        if job.error or job.render is None:
            self._fail(page, job.error or "page was not rendered", is_vlm=False)
            return page
        try:
            self.runner.submit(_Tag(page, -1), self.flow.layout_request(job))
        except Exception as e:  # noqa: BLE001 - the page fails, the document goes on
            self._fail(page, f"{type(e).__name__}: {e}")
        return page

    def _on_finished(self, done: Finished) -> None:
        tag: _Tag = done.tag
        page = tag.page
        if page.result is not None:
            return  # the page already failed; late answers are dropped
        if done.error:
            self._fail(page, done.error)
            return
        try:
            if tag.block_idx < 0:
                page.layout_done_s = time.perf_counter()
                self._blocks.submit(page, (page.job, done.answer))
                self._take_blocks()  # at once when built inline
                return
            page.answers[tag.block_idx] = done.answer
            if page.has_blocks and len(page.answers) == len(page.breqs):
                self._finish(page)
        except Exception as e:  # noqa: BLE001
            self._fail(page, f"{type(e).__name__}: {e}")

    def _build_blocks(self, item: tuple[PageJob, str]) -> tuple[list[LayoutBlock], list[BlockRequest]]:
        """The blocks stage's work (its thread, or inline): parse, crop, build requests."""
        job, answer = item
        blocks = self.flow.blocks(job, answer)
        return blocks, self.flow.block_requests(job, blocks)

    def _take_blocks(self, wait: bool = False) -> None:
        """Submit the block requests of pages whose blocks are built (layout-answer order)."""
        for item in self._blocks.take(wait):
            page: _Page = item.key
            if page.result is not None:
                continue  # failed meanwhile
            try:
                if item.error is not None:
                    raise item.error
                page.blocks, page.breqs = item.value
                page.has_blocks = True
                page.job.render = None  # crops are cut: the render is no longer needed
                for breq in page.breqs:
                    self.runner.submit(_Tag(page, breq.block_idx), breq.request)
                if not page.breqs:
                    self._finish(page)
            except Exception as e:  # noqa: BLE001 - the page fails, the document goes on
                self._fail(page, f"{type(e).__name__}: {e}")

    def _finish(self, page: _Page) -> None:
        t0 = time.perf_counter()
        answers = answers_for(page.breqs, [page.answers[b.block_idx] for b in page.breqs])
        result = self.flow.finish(page.job, page.blocks, answers)
        result.timings_s.update(page.job.timings_s)
        result.timings_s.update(vlm_layout=page.layout_done_s - page.admitted_s,
                                vlm_blocks=t0 - page.layout_done_s,
                                assemble=time.perf_counter() - t0)
        self._release(page, result)

    def _fail(self, page: _Page, reason: str, is_vlm: bool = True) -> None:
        job = page.job
        where = f"VLM {self.flow.family.name}: " if is_vlm else ""
        result = PageResult(page_idx=job.page_idx, width_pt=job.width_pt, height_pt=job.height_pt,
                            source="none", error=f"page {job.page_idx + 1}: {where}{reason}")
        result.timings_s.update(job.timings_s)
        self._release(page, result)

    @staticmethod
    def _release(page: _Page, result: PageResult) -> None:
        page.result = result
        page.job.render = None
        page.blocks, page.breqs, page.answers = [], [], {}
