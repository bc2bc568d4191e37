"""PrepStage and EngineRunner's preparation off the step thread: submit
order kept whatever the threads' timing, a failing request surfaces as its
own Finished (its page named by the scheduler), close() with requests in
preparation leaves no thread and no engine request behind, and answers are
the same as preparing inline (stub engine through the page scheduler, and
the tiny real engine)."""
from __future__ import annotations

import threading
import time
from types import SimpleNamespace

import pytest
import torch
from PIL import Image

from docpipe.models.base import VLMRequest
from docpipe.models.engine_client import EngineClient, EngineRunner
from docpipe.models.mineru25.prompts import prompt_for
from docpipe.models.mineru25.sampling import sampling_for
from docpipe.models.prep import PREP_THREADS_ENV, prep_threads
from inference.prep_stage import PrepStage
import vlm_tiny_checkpoint as tiny

torch.set_num_threads(1)  # 2 shared cores: intra-op threads only contend


_EARLIER: set[threading.Thread] = set()  # threads running when the test started (runners others left open)


@pytest.fixture(autouse=True)
def _threads_before():
    _EARLIER.clear()
    _EARLIER.update(threading.enumerate())


def _prep_threads_alive() -> list[str]:
    """Preparation threads this test started that still run."""
    names = ("docpipe-prep", "docpipe-blocks")
    return [t.name for t in set(threading.enumerate()) - _EARLIER if t.name.startswith(names)]


def _slow_square(x):
    time.sleep(0.002 * ((7 * x) % 5))  # later items often finish first
    if x == 5:
        raise ValueError(f"item {x} cannot be prepared")
    return x * x


@pytest.mark.parametrize("threads", [0, 1, 3])
def test_results_come_in_submit_order_with_errors_in_place(threads):
    stage = PrepStage(_slow_square, threads)
    for x in range(12):
        stage.submit(f"k{x}", x)
    got = []
    while stage.pending():
        got += stage.take(wait=True)
    assert [p.key for p in got] == [f"k{x}" for x in range(12)]
    assert [p.value for p in got] == [x * x if x != 5 else None for x in range(12)]
    assert isinstance(got[5].error, ValueError) and "item 5" in str(got[5].error)
    assert all(p.error is None for i, p in enumerate(got) if i != 5)
    stage.close()
    assert not _prep_threads_alive()


def test_take_without_wait_never_blocks_and_stops_at_the_oldest_not_done():
    gate = threading.Event()
    stage = PrepStage(lambda x: gate.wait(5) and x, 2)
    stage.submit("a", 1)
    stage.submit("b", 2)
    assert stage.take() == [] and stage.pending() == 2
    gate.set()
    got = stage.take(wait=True)
    while stage.pending():
        got += stage.take(wait=True)
    assert [p.value for p in got] == [1, 2]
    stage.close()


def test_close_with_items_in_preparation_joins_and_drops_them_and_the_stage_is_reusable():
    started, release, calls = threading.Event(), threading.Event(), []

    def fn(x):
        calls.append(x)
        started.set()
        release.wait(5)
        return x

    stage = PrepStage(fn, 1)
    for x in range(3):
        stage.submit(x, x)
    assert started.wait(5)
    threading.Timer(0.2, release.set).start()  # close waits for the item being prepared
    stage.close()
    assert not _prep_threads_alive() and stage.pending() == 0 and stage.take() == []
    assert calls == [0]  # the queued ones never ran
    stage.submit("again", 9)
    assert [p.value for p in stage.take(wait=True)] == [9]
    stage.close()


def test_thread_count_from_override_or_env(monkeypatch):
    monkeypatch.delenv(PREP_THREADS_ENV, raising=False)
    assert prep_threads() == 0 and prep_threads(1) == 1
    monkeypatch.setenv(PREP_THREADS_ENV, "2")
    assert prep_threads() == 2 and prep_threads(0) == 0
    monkeypatch.setenv(PREP_THREADS_ENV, "x")
    with pytest.raises(ValueError, match=PREP_THREADS_ENV):
        prep_threads()


def test_runner_close_with_requests_in_preparation_leaves_nothing_running():
    release = threading.Event()
    engine = SimpleNamespace(added=[], add_request=lambda rid, p, s: engine.added.append(rid), abort=None)
    client = SimpleNamespace(engine=engine, processor=SimpleNamespace(finish=lambda h: h, device=None),
                             prepare_host=lambda r: (release.wait(5), None))
    runner = EngineRunner(client, prep_threads=1)
    for i in range(3):
        runner.submit(i, VLMRequest(Image.new("RGB", (28, 28)), "x", {}, "text"))
    assert runner.has_pending()
    threading.Timer(0.2, release.set).start()
    runner.close()
    assert not runner.has_pending() and not _prep_threads_alive() and engine.added == []


def test_scheduler_results_are_the_same_prepared_inline_or_on_threads():
    from docpipe.bench import host_cost

    inline, _ = host_cost.run(3, seed=4, window=2, prep_threads=0)
    threaded, _ = host_cost.run(3, seed=4, window=2, prep_threads=2)
    assert inline["failed_pages"] == 0 and inline["requests"] > 3
    assert threaded["result_sha256"] == inline["result_sha256"]
    assert not _prep_threads_alive()


@pytest.fixture(scope="module")
def client(tmp_path_factory):
    ckpt = tiny.build_checkpoint(tmp_path_factory.mktemp("tiny_vlm"))
    return EngineClient.open(ckpt, device="cpu", mode="eager", num_kv_blocks=512, max_num_seqs=16,
                             max_model_len=1024)


def _request(color, max_tokens=8, prompt=None):
    sampling = {**sampling_for("text", 112, 56), "max_tokens": max_tokens, "ignore_eos": True}
    return VLMRequest(Image.new("RGB", (112, 56), color), prompt or prompt_for("text")[0], sampling, "text")


def test_threaded_runner_answers_as_inline_and_a_request_that_cannot_fit_fails_alone(client):
    reqs = [_request((40 * i, 0, 0)) for i in range(4)]
    too_long = _request((9, 9, 9), prompt="x" * 2000)  # ~2000 prompt tokens > max_model_len 1024
    want = client.generate(reqs)  # inline preparation
    runner = client.runner(prep_threads=1)
    for i, r in enumerate(reqs[:2] + [too_long] + reqs[2:]):
        runner.submit(i, r)
    done = {}
    while runner.has_pending():
        done.update({f.tag: f for f in runner.poll()})
    runner.close()
    assert [done[i].answer for i in (0, 1, 3, 4)] == want
    assert done[2].answer == "" and done[2].error.startswith("ValueError: text request: prompt of ")
    assert "max_model_len 1024" in done[2].error
    assert not client.engine.has_unfinished_requests() and not _prep_threads_alive()
    with pytest.raises(RuntimeError, match="text request 1: ValueError"):  # generate fails the call
        client.generate([reqs[0], too_long])
    assert not client.engine.has_unfinished_requests()


def test_a_page_whose_request_fails_to_prepare_fails_with_its_number(client):
    from docpipe.models.scheduler import PageFlow, PageJob, PageScheduler

    class Flow(PageFlow):  # page 2's layout prompt cannot fit the context
        def layout_request(self, job):
            return _request((job.page_idx, 0, 0), prompt="x" * 2000 if job.page_idx == 1 else None)

        def blocks(self, job, answer):
            return []

    from docpipe.models.base import get_family
    jobs = [PageJob(i, 100.0, 100.0, Image.new("RGB", (112, 56))) for i in range(3)]
    runner = client.runner(prep_threads=1)
    try:
        pages = list(PageScheduler(runner, Flow(get_family("mineru25")), 3).run(jobs))
    finally:
        runner.close()
    assert [p.ok for p in pages] == [True, False, True]
    assert pages[1].error.startswith("page 2: VLM mineru25: ValueError: text request: prompt of ")


def test_block_requests_built_on_a_thread_give_the_inline_pages_and_a_failure_names_its_page():
    from docpipe.models.base import get_family
    from docpipe.models.scheduler import PageFlow, PageJob, PageScheduler
    from test_scheduler import StepRunner

    class Flow(PageFlow):
        def block_requests(self, job, blocks):
            if job.page_idx == 2:
                raise RuntimeError("crop outside the render")
            time.sleep(0.003 * (job.page_idx % 3))  # later pages' blocks often ready first
            return super().block_requests(job, blocks)

    def run(block_threads):
        jobs = [PageJob(i, 200.0, 260.0, Image.new("RGB", (200, 260), (i, i, i))) for i in range(6)]
        runner = StepRunner()
        pages = list(PageScheduler(runner, Flow(get_family("mineru25")), 3, block_threads=block_threads).run(jobs))
        return [(p.page_idx, p.error, [(b.type, b.text) for b in p.blocks]) for p in pages]

    inline, threaded = run(0), run(1)
    assert threaded == inline and not _prep_threads_alive()
    assert [err for _, err, _ in inline] == [""] * 2 + ["page 3: VLM mineru25: RuntimeError: crop outside the render"] + [""] * 3
    assert inline[4][2] == [("title", "answer 4"), ("text", "answer 4")]
