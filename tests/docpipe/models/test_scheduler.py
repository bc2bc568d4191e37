"""PageScheduler: in-order streaming, a bounded window, overlap of later
pages' layout requests with earlier pages' block requests, and per-page
error isolation (step-level runner and WaveRunner)."""
from __future__ import annotations

import pytest
from PIL import Image

from docpipe.models.base import get_family
from docpipe.models.engine_client import Finished
from docpipe.models.replay import ReplayMissError
from docpipe.models.scheduler import PageFlow, PageJob, PageScheduler, WaveRunner

LAYOUT = ("<|box_start|>100 100 900 200<|box_end|><|ref_start|>title<|ref_end|><|rotate_up|>"
          "<|box_start|>100 250 900 600<|box_end|><|ref_start|>text<|ref_end|><|rotate_up|>")


def _answer(request) -> str:
    if request.kind == "layout":
        return LAYOUT
    return f"answer {request.image.getpixel((0, 0))[0]}"  # the page's colour: answers stay per page


def _job(i: int, **kw) -> PageJob:
    return PageJob(i, 200.0, 260.0, Image.new("RGB", (200, 260), (i, i, i)), **kw)


class StepRunner:
    """Like the engine: requests join at once; each poll finishes the oldest one."""

    def __init__(self, fail_page: int | None = None):
        self.pending, self.log, self.fail_page = [], [], fail_page

    def submit(self, tag, request):
        self.log.append(("submit", tag.page.job.page_idx, request.kind))
        self.pending.append((tag, request))

    def has_pending(self):
        return bool(self.pending)

    def poll(self):
        tag, request = self.pending.pop(0)
        self.log.append(("answer", tag.page.job.page_idx, request.kind))
        if tag.page.job.page_idx == self.fail_page and request.kind == "text":
            return [Finished(tag, error="engine refused the request")]
        return [Finished(tag, _answer(request))]


def _run(runner, jobs, window=3):
    return list(PageScheduler(runner, PageFlow(get_family("mineru25")), window).run(jobs))


def test_pages_stream_in_order_with_layout_and_blocks_overlapping():
    runner = StepRunner()
    pages = _run(runner, [_job(i) for i in range(5)])
    assert [p.page_idx for p in pages] == list(range(5))
    assert all(p.ok and p.source == "vlm" for p in pages)
    assert [[b.type for b in p.blocks] for p in pages] == [["title", "text"]] * 5
    assert [p.blocks[1].text for p in pages] == [f"answer {i}" for i in range(5)]
    log = runner.log
    # page 1's layout is submitted before page 0's blocks are answered, and page 0's
    # block requests go in as soon as its layout answer is parsed, before page 1's layout answer
    assert log.index(("submit", 1, "layout")) < log.index(("answer", 0, "text"))
    assert log.index(("submit", 0, "text")) < log.index(("answer", 1, "layout"))
    assert set(pages[0].timings_s) == {"vlm_layout", "vlm_blocks", "assemble"}


def test_window_bounds_pages_in_flight_and_results_stream_before_the_input_ends():
    pulled = []

    def jobs():
        for i in range(8):
            pulled.append(i)
            yield _job(i)

    sched = PageScheduler(StepRunner(), PageFlow(get_family("mineru25")), window_pages=2)
    seen = []
    for page in sched.run(jobs()):
        # at most `window` pages admitted and not yet yielded
        assert len(pulled) - len(seen) <= 2
        seen.append(page.page_idx)
        if page.page_idx == 0:
            assert len(pulled) < 8  # streamed: the first page came out long before the last was read
    assert seen == list(range(8))


def test_a_failed_request_or_render_fails_only_its_page():
    jobs = [_job(0), _job(1), PageJob(2, 200.0, 260.0, None, error="cannot be rendered (bad stream)"), _job(3)]
    pages = _run(StepRunner(fail_page=1), jobs, window=2)
    assert [p.page_idx for p in pages] == [0, 1, 2, 3]
    assert pages[0].ok and pages[3].ok
    assert pages[1].error == "page 2: VLM mineru25: engine refused the request" and not pages[1].blocks
    assert pages[2].error == "page 3: cannot be rendered (bad stream)"


def test_a_flow_error_fails_only_its_page():
    class Flaky(PageFlow):
        def blocks(self, job, answer):
            if job.page_idx == 1:
                raise ValueError("unparseable layout")
            return super().blocks(job, answer)

    pages = list(PageScheduler(StepRunner(), Flaky(get_family("mineru25")), 4).run([_job(i) for i in range(3)]))
    assert [p.ok for p in pages] == [True, False, True]
    assert "page 2: VLM mineru25: ValueError: unparseable layout" == pages[1].error


class Client:
    """A VLMClient that has no answer for page 2's requests (like a replay miss)."""

    def __init__(self):
        self.batch_sizes = []

    def generate(self, requests):
        self.batch_sizes.append(len(requests))
        missing = [r for r in requests if r.image.getpixel((0, 0))[0] == 2]
        if missing:
            raise ReplayMissError("/nowhere", missing)
        return [_answer(r) for r in requests]


def test_wave_runner_batches_across_pages_and_isolates_a_failing_page():
    client = Client()
    pages = _run(WaveRunner(client), [_job(i) for i in range(4)], window=4)
    assert [p.ok for p in pages] == [True, True, False, True]
    assert "no recorded answer" in pages[2].error and "/nowhere" in pages[2].error
    assert client.batch_sizes[0] == 4  # the first wave holds every page's layout request
    assert [p.blocks[1].text for p in pages if p.ok] == ["answer 0", "answer 1", "answer 3"]


def test_pages_done_before_a_runner_crash_are_kept():
    class Crashing(StepRunner):
        def poll(self):
            if len([e for e in self.log if e[0] == "answer"]) == 6:
                raise RuntimeError("device lost")
            return super().poll()

    got = []
    with pytest.raises(RuntimeError, match="device lost"):
        for page in PageScheduler(Crashing(), PageFlow(get_family("mineru25")), 1).run([_job(i) for i in range(4)]):
            got.append(page.page_idx)
    assert got == [0, 1]
