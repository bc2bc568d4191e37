"""`docpipe bench pipeline`: the VLM document path end to end (render ->
layout -> block requests -> assembly) on our engine, side by side with
transformers `generate()` on the same model, pages and requests, in one
process. Prints a table; writes every figure, the device, versions and the
command as JSON (default inference/bench/results/pipeline_<host>.json).

Work: the repo's samples/*.pdf (or --pdf files), or --pages N synthetic
pages. The model has random weights (`dummy:mineru2.5`), so output lengths
are forced as in mineru-synthetic (ignore EOS, max_tokens per request from
docpipe/bench/workload.py, seeded jitter). The layout request runs at its
real cost, then its (meaningless) answer is replaced by the page's blocks:
from a replay record (--replay DIR) when there is one, else the text
layer's blocks (PDF pages), else the synthetic mix; the block requests follow
from those blocks (real crops of the render for PDF pages). With --docs N
the --pages workload is split over N generated PDFs that go through the
convert path's several-document stream (pipeline_docs.py).

Engine: `PageScheduler` over the step-level `EngineRunner` (requests join the
running batch as soon as a layout answer is parsed). Baseline: the same
scheduler over a `WaveRunner` whose client batches each wave into
`generate()` calls (pipeline_hf.py). Time split (seconds, host-timed with a device sync):
vision (encoder), prefill (steps with a prompt chunk, less vision), decode
(decode-only steps); busy = time inside model calls / wall; render and
assembly are per-page sums (render runs on its own thread, overlapped).
Each side first runs --warmup-pages synthetic pages, untimed (kernel
compilation, graph capture). The device's copy and bf16 matmul ceilings are
measured in the same run. --output-scale shrinks forced lengths for smoke
runs only (recorded in the JSON).
"""
from __future__ import annotations

import json
import socket
import sys
import time
from pathlib import Path

import typer

from docpipe.bench.device_busy import DeviceBusy
from docpipe.bench.device_memory import allocator_counts, memory_gib
from docpipe.bench.step_trace import StepTrace, format_summary
from docpipe.bench.step_trace import requested as step_trace_path
from docpipe.bench.pipeline_hf import TransformersClient, baseline_model
from docpipe.bench.pipeline_jobs import BenchFlow, make_jobs
from docpipe.bench.timing import Clock, step_kind
from inference.bench.machine import ceilings, device_name, versions
from docpipe.models.scheduler import PageScheduler, WaveRunner

BASELINE_WARMUP_PAGES = 2  # warm-up pages of the transformers side at most


def run_side(name: str, runner, flow: BenchFlow, jobs, window: int, clock: Clock, docs: list | None = None,
             device_busy=None, trace=None) -> dict:
    """One timed pass: `jobs` through the page scheduler, or with `docs` (PDF
    paths) through the convert path's document stream (pipeline_docs.py)."""
    from docpipe.bench.pipeline_docs import stream_pages
    from docpipe.bench import sync_debug
    from inference.bench import kernel_profile
    from docpipe.bench.jit_watch import jit_watch

    flow.num_requests = flow.num_output_tokens = 0
    if device_busy is not None:
        device_busy.reset()
    if trace is not None:  # DOCPIPE_TRACE: its step window counts from this pass's first step
        trace.reset()
    alloc_before = allocator_counts()
    with (sync_debug.sync_sites(sync_debug.requested()) as syncs,  # DOCPIPE_SYNC_DEBUG=1: host waits
          kernel_profile.kernel_profile(kernel_profile.requested()) as kernels,  # DOCPIPE_PROFILE_KERNELS=1
          jit_watch() as jit):  # Triton kernels built or loaded inside the timed run
        t0 = time.perf_counter()
        if docs:
            pages, num_docs = stream_pages(docs, runner, flow, window)
        else:
            pages, num_docs = list(PageScheduler(runner, flow, window).run(jobs)), 0
        wall = time.perf_counter() - t0
    alloc = {k: v - alloc_before.get(k, 0) for k, v in allocator_counts().items()}
    failed = [p.error for p in pages if not p.ok]
    busy = sum(v for k, v in clock.s.items() if k in ("prefill", "decode", "generate"))
    total = lambda stage: sum(p.timings_s.get(stage, 0.0) for p in pages)  # noqa: E731
    return {"name": name, "pages": len(pages), "documents": num_docs, "failed_pages": len(failed), "errors": failed[:3],
            "requests": flow.num_requests, "output_tokens": flow.num_output_tokens, "wall_s": wall,
            "pages_per_s": len(pages) / wall, "output_tokens_per_s": flow.num_output_tokens / wall,
            "busy_fraction": busy / wall, "render_s": total("render"), "vision_s": clock.s.get("vision", 0.0),
            "prefill_s": clock.s.get("prefill", 0.0) - clock.s.get("vision", 0.0),
            "decode_s": clock.s.get("decode", 0.0), "generate_s": clock.s.get("generate", 0.0),
            "assembly_s": total("assemble"), "prep_threads": getattr(runner, "prep_threads", 0), **({"device": device_busy.report(wall)} if device_busy is not None else {}),
            **({"sync_sites": syncs.report()} if syncs is not None else {}),
            **({"device_allocator": alloc, "device_memory_GiB": memory_gib()} if alloc else {}),
            **({"triton_jit_misses": jit.report()} if jit is not None else {}),
            **({"kernels": kernels.report(wall)} if kernels is not None else {}),
            **({"step_trace": trace.report()} if trace is not None else {})}


def _engine_clock(client, clock: Clock) -> None:
    """Wrap the engine's execute and vision encoder (instance attributes: this process only)."""
    runner = client.engine.runner
    # launch() when the runner splits a step into launch/collect (execute calls it too), else execute()
    step = "launch" if hasattr(runner, "launch") else "execute"
    setattr(runner, step, clock.wrap(getattr(runner, step), step_kind))
    # the encoder call (eager or a graph replay) and its input staging
    runner._encode = clock.wrap(runner._encode, lambda *a, **k: "vision")


def run_bench(model: str, pdfs: list[Path], num_pages: int, baseline: str, window: int, hf_batch: int,
              device: str, dtype: str, seed: int, replay: str | None, warmup_pages: int = 2,
              output_scale: float = 1.0, baseline_pages: int = 0, max_num_seqs: int = 256, num_docs: int = 0,
              time_split: bool = True, prefill_hold_tokens: int = -1, prefill_hold_s: float = -1.0,
              prefill_pad_tokens: int = -1) -> dict:
    import importlib.util
    import tempfile

    import torch

    from docpipe.models.base import get_family
    from docpipe.models.engine_client import EngineClient
    from inference.config import resolve_dtype
    from inference.models.loader import load_config

    mode = "graph" if device.startswith("cuda") and importlib.util.find_spec("inference.worker.cuda_graph") else "eager"
    cfg = load_config(model)
    torch_dtype = resolve_dtype(dtype, cfg.torch_dtype, torch.device(device))
    family = get_family("mineru25")
    hf, engine_model, tmp = baseline_model(model, cfg, baseline, device, torch_dtype)
    docs_dir = None
    if hf is None and device.startswith("cuda"):
        torch.cuda.empty_cache()  # the engine sizes its KV pool from free device memory
    try:  # the saved dummy checkpoint goes away even when a side fails
        # the HF model needs activation room next to the engine's KV pool in the same process
        share = 0.5 if hf is not None and device.startswith("cuda") else 0.9
        client = EngineClient.open(engine_model, family=family, device=device, dtype=torch_dtype, mode=mode,
                                   gpu_memory_utilization=share, max_num_seqs=max_num_seqs,
                                   **({} if prefill_hold_tokens < 0 else {"prefill_hold_tokens": prefill_hold_tokens}),
                                   **({} if prefill_hold_s < 0 else {"prefill_hold_s": prefill_hold_s}),
                                   **({} if prefill_pad_tokens < 0 else {"prefill_pad_tokens": prefill_pad_tokens}))
        docs, flow = [], BenchFlow(family, seed, replay, output_scale)
        if num_docs:  # the workload split over PDFs, streamed like `docpipe convert` streams them
            from docpipe.bench.pipeline_docs import DocsFlow, split_pages, write_pdfs

            docs_dir = tempfile.TemporaryDirectory(prefix="bench-docs-")
            docs = write_pdfs(Path(docs_dir.name), num_pages, num_docs)
            per_doc = split_pages(num_pages, num_docs)
            flow = DocsFlow(family, seed, replay, output_scale, pages_per_doc=per_doc)
        engine_clock, sides = Clock(), []
        if time_split:  # synchronised timers: they also stop host work from overlapping device steps
            _engine_clock(client, engine_clock)
        # device busy/idle from step events (no syncs); with the time split the syncs make it moot
        engine_busy = None if time_split else DeviceBusy.attach(client.engine.runner)
        trace = StepTrace.attach(client.engine.runner, step_trace_path())  # DOCPIPE_TRACE=PATH: a step timeline
        runners = [("docpipe engine", client.runner(stop_loops=False), engine_clock)]
        if hf is not None:
            hf_clock = Clock()
            runners.append(("transformers generate()", WaveRunner(TransformersClient(hf, client, hf_batch, hf_clock)),
                            hf_clock))
        baseline_warmup_pages = min(warmup_pages, BASELINE_WARMUP_PAGES) if hf is not None else 0
        for name, runner, clock in runners:
            # first calls compile kernels, capture graphs, grow allocators: not timed; the baseline has
            # no graphs to capture and a page of it costs ~10 s on the H200, so it warms on a few
            warm = warmup_pages if clock is engine_clock else baseline_warmup_pages
            if warm:
                run_side(name, runner, flow, make_jobs([], warm, seed + 1), window, clock)
                clock.s.clear()
            # the baseline may take the first --baseline-pages of the same synthetic workload
            n = baseline_pages if (baseline_pages and num_pages and clock is not engine_clock) else num_pages
            k = next(i + 1 for i in range(len(docs)) if sum(per_doc[:i + 1]) >= n) if docs else 0
            sides.append(run_side(name, runner, flow, make_jobs(pdfs, 0 if docs else n, seed), window, clock,
                                  docs[:k],  # with --docs: the first documents covering n pages
                                  engine_busy if clock is engine_clock else None,
                                  trace if clock is engine_clock else None))
        vision_graphs = getattr(client.engine.runner, "vision_graphs", None)
        vision_buckets = sorted(vision_graphs.graphs) if vision_graphs is not None else None
    finally:
        for t in (tmp, docs_dir):
            if t is not None:
                t.cleanup()
    out = {"model": model, "dtype": str(torch_dtype), "engine_mode": mode, "window_pages": window,
           "max_num_seqs": max_num_seqs, "baseline_pages": baseline_pages or num_pages,
           "hf_batch": hf_batch, "seed": seed, "warmup_pages": warmup_pages,
           "baseline_warmup_pages": baseline_warmup_pages,
           "engine_memory_share": share,
           "output_scale": output_scale,
           "inputs": [str(p) for p in pdfs] if not num_pages else f"mineru-synthetic x{num_pages}",
           "documents": num_docs, "time_split": time_split, "prefill_hold_tokens": prefill_hold_tokens,
           "prefill_hold_s": prefill_hold_s, "prefill_pad_tokens": prefill_pad_tokens,
           "ceilings": ceilings(device), "sides": sides,
           "vision_graph_buckets": vision_buckets}  # encoder graphs captured (patch buckets), None: eager
    try:  # which vision attention each length bucket chose (timed once per process)
        from inference.ops.cuda.vision_attention import _CHOICE
        out["vision_attention_choices"] = {repr(k): v for k, v in _CHOICE.items()}
    except ImportError:
        pass
    if len(sides) == 2:
        out["pages_per_s_ratio"] = sides[0]["pages_per_s"] / sides[1]["pages_per_s"]
    return out


def print_table(result: dict) -> None:
    cols = ["pages", "wall_s", "pages_per_s", "output_tokens_per_s", "busy_fraction", "render_s", "vision_s",
            "prefill_s", "decode_s", "generate_s", "assembly_s"]
    widths = [max(9, len(c)) + 2 for c in cols]
    print(f"{'side':<24}" + "".join(f"{c:>{w}}" for c, w in zip(cols, widths)))
    for s in result["sides"]:
        print(f"{s['name']:<24}" + "".join(f"{s[c]:>{w}.3f}" if isinstance(s[c], float) else f"{s[c]:>{w}}"
                                             for c, w in zip(cols, widths)))
        if "device" in s:
            d = s["device"]
            print(f"  device busy {d['device_busy_fraction']:.3f} (step events), idle between steps "
                  f"{d['device_idle_between_steps_s']:.2f} s; steps {d['steps']}; device s {d['device_s']}; "
                  f"decode step {d['decode_step_device_ms']:.2f} ms device / {d['decode_step_host_launch_ms']:.2f} ms "
                  f"host launch")
            if "host_collect_wait_s" in d:
                print(f"  host: launch {d['host_launch_s']}, waiting in collect {d['host_collect_wait_s']:.2f} s, "
                      f"other work {d['host_other_s']:.2f} s")
        if "device_allocator" in s:
            print(f"  device allocator during the run: {s['device_allocator']}")
        if s.get("triton_jit_misses", {}).get("misses"):
            j = s["triton_jit_misses"]
            print(f"  Triton kernels built/loaded during the run: {j['misses']} ({j['seconds']:.2f} s): "
                  + ", ".join(f"{k['kernel']} x{k['misses']} {k['seconds']:.2f} s" for k in j["kernels"][:8]))
        if "kernels" in s:
            k = s["kernels"]
            print(f"  kernels {k['device_kernel_ms']:.0f} ms ({k['kernel_share_of_wall']:.2f} of wall); top:")
            from inference.bench.kernel_profile import top_lines
            print("\n".join(top_lines(k, 25, "    ")))
        if "step_trace" in s:
            print(format_summary(s["step_trace"]) if "per_step_kind" in s["step_trace"] else s["step_trace"])
        for site in s.get("sync_sites", [])[:12]:
            print(f"  host sync x{site['count']}: {site['site']}")
        for err in s["errors"]:
            print(f"  failed page: {err}")
    if result.get("vision_graph_buckets") is not None:
        print(f"vision encoder graphs captured: {len(result['vision_graph_buckets'])} buckets")
    if result.get("vision_attention_choices"):
        print(f"vision attention choices: {result['vision_attention_choices']}")
    if "pages_per_s_ratio" in result:
        print(f"pages/s ratio engine / transformers: {result['pages_per_s_ratio']:.2f}x")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("pipeline")
    def pipeline(
        pdf: list[Path] = typer.Option(None, help="PDFs to convert (default: samples/*.pdf)"),
        pages: int = typer.Option(0, min=0, help="use N mineru-synthetic pages instead of PDFs"),
        model: str = typer.Option("dummy:mineru2.5", help="dummy:<preset> or a checkpoint dir"),
        baseline: str = typer.Option("transformers", help="transformers | none"),
        window: int = typer.Option(16, min=1, help="pages in flight"),
        hf_batch: int = typer.Option(64, min=1, help="transformers: requests per generate() call"),
        device: str = typer.Option(None, help="cuda | cpu (default: cuda when available)"),
        dtype: str = typer.Option("auto", help="auto | bfloat16 | float16 | float32"),
        seed: int = typer.Option(0, help="forced lengths and synthetic images"),
        replay: str = typer.Option(None, help="replay folder whose layout answers stand in for the model's"),
        warmup_pages: int = typer.Option(2, min=0, help="synthetic pages run first on each side, not timed "
                                             f"(the baseline: {BASELINE_WARMUP_PAGES} at most)"),
        output_scale: float = typer.Option(1.0, min=0.0, max=1.0, help="scale forced output lengths (smoke tests)"),
        baseline_pages: int = typer.Option(0, min=0, help="transformers runs the first N of the --pages workload (0: all)"),
        max_num_seqs: int = typer.Option(256, min=1, help="engine: concurrent requests"),
        docs: int = typer.Option(0, min=0, help="split the --pages workload over N PDFs streamed like convert"),
        prefill_hold_tokens: int = typer.Option(-1, help="engine prefill hold in tokens (-1: engine default)"),
        prefill_hold_s: float = typer.Option(-1.0, help="engine prefill hold in seconds (-1: engine default)"),
        prefill_pad_tokens: int = typer.Option(-1, help="engine: pad eager steps to a multiple of N tokens "
                                                        "(0: off, -1: engine default)"),
        time_split: bool = typer.Option(True, help="engine time split (syncs the device around each step, "
                                                   "which costs throughput: use --no-time-split for pages/s)"),
        out: Path = typer.Option(None, help="JSON output (default inference/bench/results/pipeline_<host>.json)"),
    ) -> None:
        """Pages/s of the VLM path on our engine vs transformers generate(), with a time split."""
        import torch
        if baseline not in ("transformers", "none"):
            raise typer.BadParameter("baseline must be transformers or none")
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        pdfs = [] if pages else (list(pdf) if pdf else sorted(Path("samples").glob("*.pdf")))
        if not pages and not pdfs:
            raise typer.BadParameter("no PDFs: pass --pdf, run from the repo root (samples/*.pdf) or use --pages N")
        if docs and not 1 <= docs <= pages:
            raise typer.BadParameter("--docs N needs --pages P with P >= N (at least a page per document)")
        started = time.time()
        result = run_bench(model, pdfs, pages, baseline, window, hf_batch, device, dtype, seed, replay,
                           warmup_pages, output_scale, baseline_pages, max_num_seqs, docs, time_split,
                           prefill_hold_tokens, prefill_hold_s, prefill_pad_tokens)
        print_table(result)
        host = socket.gethostname()
        out = out or Path("inference/bench/results") / f"pipeline_{host}.json"
        doc = {"command": " ".join(["docpipe", "bench", "pipeline", *sys.argv[3:]]), "argv": sys.argv, "host": host,
               "device": device_name(device), "versions": versions("transformers", "pymupdf"), "started_unix_s": started,
               "wall_s": time.time() - started, **result}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out}")
