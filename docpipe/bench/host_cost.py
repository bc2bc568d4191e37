"""`python -m docpipe.bench.host_cost --pages N`: the docpipe-side host cost
of the VLM document path per page, on the CPU, without a model.

The flow is `docpipe bench pipeline --pages N` exactly (same `BenchFlow`,
synthetic pages (made inline here, ahead on a thread in the bench), `PageScheduler`, `EngineClient` and `EngineRunner`, the real
`inference.processor.Processor` of a `dummy:mineru2.5` checkpoint whose image
processor is saved like the bench saves it), but the engine is a stub: each
step answers every request added since the last step at once, with its
forced number of seeded token ids below the codec's special ids. So prompt
coding, processing, answer decoding (`PromptCodec.decode`), block filling
and page assembly cost what they cost in the bench; the model costs nothing.

Stages are timed with wrappers that keep *self* time (a stage's time minus
the wrapped stages it called), so the stages add up to the run's host time.
`engine_stub` (making the fake answers), `processor` (inference/**, not
docpipe's) and `prep_wait` (the step thread taking prepared requests, waiting
when it has nothing else to do) are reported on their own and left out of
`docpipe_ms_per_page`.
`result_sha256` is a digest of every page result (blocks, no timings): an
optimisation must leave it unchanged.

Preparation threads (`--prep-threads N`, default the runner's: inline on the
CPU): with N > 0 request preparation (`prepare_host`, the processor's host
half) runs on the runner's threads, so stage times of several threads add up
(their sum may pass the wall time); `step_thread_cpu_ms_per_page` is the CPU
time of the thread that runs the scheduler and steps the engine, the figure
the preparation threads are there to cut.
"""
from __future__ import annotations

import argparse
import cProfile
import dataclasses
import hashlib
import json
import pstats
import sys
import tempfile
import threading
import time
import zlib
from collections import defaultdict
from types import SimpleNamespace

import numpy as np

OUTSIDE_DOCPIPE = ("engine_stub", "processor", "prep_wait")  # stages not docpipe's: reported, not counted


class StageTimer:
    """Self seconds and calls per stage, for wrapped callables (nesting-aware)."""

    def __init__(self):
        self.self_s: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)
        self._local = threading.local()  # per thread, per open call: seconds spent in wrapped callees
        self._lock = threading.Lock()  # preparation threads add up stages too

    def wrap(self, name: str, fn):
        def timed(*args, **kwargs):
            children = self._local.__dict__.setdefault("children", [])
            t0 = time.perf_counter()
            children.append(0.0)
            try:
                return fn(*args, **kwargs)
            finally:
                dt = time.perf_counter() - t0
                with self._lock:
                    self.self_s[name] += dt - children.pop()
                    self.calls[name] += 1
                if children:
                    children[-1] += dt
        return timed

    def iterate(self, name: str, items):
        """`items` with each `next()` timed as `name`."""
        step = self.wrap(name, lambda it: next(it, None))
        it = iter(items)
        while (item := step(it)) is not None:
            yield item


@dataclasses.dataclass
class _StubRequest:
    output_token_ids: list[int]
    status: object = dataclasses.field(default_factory=lambda: SimpleNamespace(is_finished=False))

    @property
    def num_output_tokens(self) -> int:
        return len(self.output_token_ids)


class StubEngine:
    """What EngineRunner uses of `inference.LLMEngine`: processor, config, add_request, step, abort."""

    def __init__(self, processor, max_model_len: int, id_limit: int, seed: int):
        self.processor = processor
        self.config = SimpleNamespace(max_model_len=max_model_len)
        self.id_limit = id_limit  # answers stay below every special / stop id
        self.seed = seed
        # request id -> (forced output length, processed prompt): held until answered, as an engine
        # holds it, so freeing its pixels is the stub's cost, not the submitter's
        self._added: dict[str, tuple[int, object]] = {}

    def add_request(self, request_id: str, processed, params) -> _StubRequest:
        self._added[request_id] = (params.max_tokens, processed)
        return _StubRequest([])

    def step(self) -> list[SimpleNamespace]:
        added, self._added = self._added, {}
        out = [SimpleNamespace(request_id=rid, token_ids=self._answer(n, processed).tolist())
               for rid, (n, processed) in added.items()]
        added.clear()
        return out

    def _answer(self, num_tokens: int, processed) -> np.ndarray:
        """Ids seeded by the request's content (its first pixels), so answers do not depend on
        the order requests arrive in (window, timing)."""
        head = processed.pixel_values[:4].numpy().tobytes() if processed.pixel_values is not None else b""
        rng = np.random.default_rng([self.seed, zlib.crc32(head), len(processed.token_ids)])
        return rng.integers(0, self.id_limit, num_tokens)

    def abort(self, request_id: str) -> None:
        self._added.pop(request_id, None)


def make_client(timer: StageTimer, seed: int):
    """EngineClient over a StubEngine with the bench's dummy:mineru2.5 processor."""
    from transformers import Qwen2VLImageProcessor

    from docpipe.bench.pipeline_hf import LAYOUT_PIXELS
    from docpipe.models.base import get_family
    from docpipe.models.engine_client import EngineClient
    from inference.config import EngineConfig
    from inference.models.loader import load_config
    from inference.processor import Processor

    cfg = load_config("dummy:mineru2.5")
    unit = (cfg.vision.patch_size * cfg.vision.spatial_merge_size) ** 2
    with tempfile.TemporaryDirectory(prefix="host-cost-") as tmp:  # the image processor as the bench saves it
        Qwen2VLImageProcessor(patch_size=cfg.vision.patch_size, merge_size=cfg.vision.spatial_merge_size,
                              temporal_patch_size=cfg.vision.temporal_patch_size, min_pixels=4 * unit,
                              max_pixels=LAYOUT_PIXELS).save_pretrained(tmp)
        processor = Processor(cfg, tmp)
    engine = StubEngine(processor, EngineConfig.max_model_len, 1, seed)
    client = EngineClient(SimpleNamespace(engine=engine), get_family("mineru25"))
    engine.id_limit = client.codec.text_id_limit
    engine.step = timer.wrap("engine_stub", engine.step)
    engine.add_request = timer.wrap("engine_stub", engine.add_request)
    processor = client.processor  # its host half (preparation) and device half (the step thread)
    processor.host = timer.wrap("processor", processor.host)
    processor.finish = timer.wrap("processor", processor.finish)
    client.prepare_host = timer.wrap("prepare", client.prepare_host)
    client.codec.decode = timer.wrap("decode", client.codec.decode)
    return client


def run(num_pages: int, seed: int = 0, window: int = 16, prep_threads: int | None = None) -> tuple[dict, list]:
    """(stage figures, page results) of one timed pass of `num_pages` synthetic pages."""
    import docpipe.bench.pipeline_jobs as bench
    from docpipe.models.scheduler import PageScheduler

    timer = StageTimer()
    client = make_client(timer, seed)
    runner = client.runner(stop_loops=False, prep_threads=prep_threads)  # as the bench runs it
    runner.submit = timer.wrap("submit", runner.submit)
    runner.poll = timer.wrap("poll", runner.poll)
    runner._prep.take = timer.wrap("prep_wait", runner._prep.take)  # the step thread waiting for preparation
    family = client.family
    family.fill_block = timer.wrap("fill_block", family.fill_block)
    family.assemble = timer.wrap("assemble", family.assemble)
    flow = bench.BenchFlow(family, seed, None)
    flow.layout_request = timer.wrap("layout_request", flow.layout_request)
    flow.block_requests = timer.wrap("block_requests", flow.block_requests)
    flow.finish = timer.wrap("finish", flow.finish)
    sched = PageScheduler(runner, flow, window)
    for name in ("_admit", "_take_blocks", "_build_blocks", "_on_finished", "_finish"):
        setattr(sched, name, timer.wrap("sched" + name, getattr(sched, name)))
    noise = bench._noise
    bench._noise = timer.wrap("noise", noise)  # page renders (job source) and block crops of the bench
    try:
        t0, cpu0 = time.perf_counter(), time.thread_time()
        # the bench's page source, inline: the bench makes these pages ahead on a thread (make_jobs),
        # which would put their cost beside the step thread's stages instead of among them
        jobs = timer.iterate("jobs", bench._synthetic_jobs(num_pages, seed))
        pages = list(timer.iterate("scheduler", sched.run(jobs)))
        wall, step_cpu = time.perf_counter() - t0, time.thread_time() - cpu0
    finally:
        bench._noise = noise
        runner.close()  # the preparation threads end with the run
    ms = {k: 1000 * v / num_pages for k, v in sorted(timer.self_s.items(), key=lambda kv: -kv[1])}
    docpipe_ms = sum(v for k, v in ms.items() if k not in OUTSIDE_DOCPIPE)
    figures = {"pages": num_pages, "failed_pages": sum(not p.ok for p in pages), "requests": flow.num_requests,
               "wall_ms_per_page": 1000 * wall / num_pages, "docpipe_ms_per_page": docpipe_ms,
               "step_thread_cpu_ms_per_page": 1000 * step_cpu / num_pages, "prep_threads": runner._prep.threads,
               "processor_ms_per_page": ms.get("processor", 0.0), "stage_self_ms_per_page": ms,
               "calls": dict(timer.calls), "result_sha256": result_digest(pages)}
    return figures, pages


def result_digest(pages) -> str:
    """sha256 of the page results without their timings (what the writers see)."""
    h = hashlib.sha256()
    for p in pages:
        d = dataclasses.asdict(p)
        d.pop("timings_s")
        h.update(repr(d).encode())
    return h.hexdigest()


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(prog="python -m docpipe.bench.host_cost", description=__doc__.split("\n\n")[0])
    ap.add_argument("--pages", type=int, default=64)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--warmup-pages", type=int, default=2)
    ap.add_argument("--prep-threads", type=int, default=None,
                    help="request preparation threads (0 = inline; default: the runner's, $DOCPIPE_PREP_THREADS)")
    ap.add_argument("--profile", type=int, default=0, help="also print the top N functions of a cProfile pass")
    ap.add_argument("--out", default="", help="write the figures as JSON here")
    args = ap.parse_args(argv)
    import torch
    torch.set_num_threads(1)  # the host thread's cost, not a parallel processor's
    if args.warmup_pages:
        run(args.warmup_pages, args.seed + 1, args.window, args.prep_threads)  # imports, first-call costs
    figures, _ = run(args.pages, args.seed, args.window, args.prep_threads)
    figures["command"] = " ".join(["python -m docpipe.bench.host_cost", *(argv if argv is not None else sys.argv[1:])])
    print(f"{args.pages} pages: docpipe {figures['docpipe_ms_per_page']:.2f} ms/page, processor "
          f"{figures['processor_ms_per_page']:.2f} ms/page, wall {figures['wall_ms_per_page']:.2f} ms/page, "
          f"step thread CPU {figures['step_thread_cpu_ms_per_page']:.2f} ms/page "
          f"({figures['prep_threads']} preparation threads)")
    for stage, v in figures["stage_self_ms_per_page"].items():
        print(f"  {stage:<16}{v:9.3f} ms/page  ({figures['calls'][stage]} calls)")
    print(f"result_sha256 {figures['result_sha256']}")
    if args.profile:
        prof = cProfile.Profile()
        prof.runcall(run, args.pages, args.seed, args.window, args.prep_threads)
        pstats.Stats(prof).sort_stats("tottime").print_stats(args.profile)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(figures, f, indent=1)
    return figures


if __name__ == "__main__":
    main()
