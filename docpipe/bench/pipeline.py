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
from those blocks (real crops of the render for PDF pages).

Engine: `PageScheduler` over the step-level `EngineRunner` (requests join the
running batch as soon as a layout answer is parsed). Baseline: the same
scheduler over a `WaveRunner` whose client batches each wave per request
kind (layout / blocks, at most --hf-batch) into `generate()` calls, plain
greedy (the engine also applies MinerU's penalties and no-repeat-ngram 100,
which only costs it). Time split (seconds, host-timed with a device sync):
vision (encoder), prefill (steps with a prompt chunk, less vision), decode
(decode-only steps); busy = time inside model calls / wall.
"""
from __future__ import annotations

import inspect
import json
import os
import platform
import random
import socket
import sys
import tempfile
import time
import zlib
from pathlib import Path

import typer

LAYOUT_TOKENS = "layout"  # keys into workload.PAGE_MIX for forced output lengths
_TYPE_TO_MIX = {"title": "title", "table": "table", "equation": "equation"}  # anything else: "text"


def _sync():
    import torch
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class Clock:
    """Seconds per category, for wrapped callables (synchronized: device work is counted)."""

    def __init__(self):
        self.s: dict[str, float] = {}

    def add(self, key: str, secs: float) -> None:
        self.s[key] = self.s.get(key, 0.0) + secs

    def wrap(self, fn, classify):
        def timed(*args, **kwargs):
            _sync()
            t0 = time.perf_counter()
            out = fn(*args, **kwargs)
            _sync()
            self.add(classify(*args, **kwargs), time.perf_counter() - t0)
            return out
        return timed


def _forced_len(rng_key: tuple, mix_kind: str) -> int:
    from docpipe.bench.workload import JITTER, PAGE_MIX
    rng = random.Random(repr(rng_key))
    return max(1, round(PAGE_MIX[mix_kind][3] * rng.uniform(1 - JITTER, 1 + JITTER)))


def _noise(width: int, height: int, key: tuple):
    import numpy as np
    from PIL import Image
    rng = np.random.default_rng(zlib.crc32(repr(key).encode()))  # not hash(): salted per process
    return Image.fromarray(rng.integers(0, 256, size=(height, width, 3), dtype=np.uint8))


def _bench_flow(family, seed: int, replay_dir: str | None):
    from docpipe.models.base import VLMRequest
    from docpipe.models.mineru25.prompts import prompt_for
    from docpipe.models.scheduler import PageFlow
    from docpipe.models.vlm_page import BlockRequest

    class BenchFlow(PageFlow):
        def layout_request(self, job):
            req = super().layout_request(job)
            forced = job.plan.get("layout_tokens") or _forced_len((seed, job.plan["doc"], job.page_idx), "layout")
            req.sampling.update(max_tokens=forced, ignore_eos=True)
            if replay_dir:  # the recorded layout answer, when there is one, stands in for the model's
                from docpipe.models.replay import record_path
                path = record_path(Path(replay_dir), req.key)
                if path.is_file():
                    job.plan["blocks"] = self.family.parse_layout(json.loads(path.read_text())["answer"])
            return req

        def blocks(self, job, answer):
            return job.plan["blocks"]

        def block_requests(self, job, blocks):
            key = (seed, job.plan["doc"], job.page_idx)
            if job.plan.get("synthetic"):
                out = []
                for i, r in enumerate(job.plan["synthetic"]):
                    kind = "text" if r.kind == "title" else r.kind
                    sampling = {**self._sampling(kind, r.width_px, r.height_px), "max_tokens": r.output_tokens}
                    out.append(BlockRequest(i, VLMRequest(_noise(r.width_px, r.height_px, (*key, i)),
                                                          prompt_for(r.kind)[0], sampling, kind)))
                return out
            out = super().block_requests(job, blocks)
            for br in out:
                mix = _TYPE_TO_MIX.get(blocks[br.block_idx].type, "text")
                br.request.sampling.update(max_tokens=_forced_len((*key, br.block_idx), mix), ignore_eos=True)
            return out

        @staticmethod
        def _sampling(kind, w, h):
            from docpipe.models.mineru25.sampling import sampling_for
            return {**sampling_for(kind, w, h), "ignore_eos": True}

    return BenchFlow(family)


def make_jobs(pdfs: list[Path], num_pages: int, seed: int, dpi: int = 200):
    """PageJobs for the whole run (generator: PDFs are rendered ahead by prefetch_pages)."""
    from docpipe.bench.workload import mineru_synthetic
    from docpipe.models.base import LayoutBlock
    from docpipe.models.scheduler import PageJob

    if num_pages:
        for reqs in mineru_synthetic(num_pages, seed):
            page = reqs[0].page
            blocks = [LayoutBlock(r.kind, (0.0, 0.0, 1.0, 1.0)) for r in reqs[1:]]
            plan = {"doc": "synthetic", "blocks": blocks, "synthetic": reqs[1:], "layout_tokens": reqs[0].output_tokens}
            yield PageJob(page, 612.0, 792.0, _noise(1036, 1036, (seed, page)), plan=plan)
        return
    import pymupdf

    from docpipe.ingest.render import prefetch_pages
    from docpipe.text import backend as text_backend
    from docpipe.config import ConvertOptions

    opts = ConvertOptions(ocr="never")
    for pdf in pdfs:
        with pymupdf.open(pdf) as doc:
            indices = list(range(doc.page_count))
            ctx = text_backend.first_pass(doc, indices)

            def text_blocks(page):  # on the render thread: the text layer's blocks stand in for the layout
                res = text_backend.extract_page(page, page.number, ctx, opts)
                w, h = page.rect.width, page.rect.height
                return [LayoutBlock("text" if b.type == "list" else b.type,
                                    (b.bbox[0] / w, b.bbox[1] / h, b.bbox[2] / w, b.bbox[3] / h))
                        for b in res.blocks if b.bbox[2] > b.bbox[0] and b.bbox[3] > b.bbox[1]], (w, h)

            for item in prefetch_pages(doc, indices, dpi=dpi, window=4, also=text_blocks):
                blocks, (w, h) = item.extra if item.extra else ([], (0.0, 0.0))
                yield PageJob(item.page_idx, w, h, item.image, error=str(item.error or ""),
                              timings_s={"render": item.render_s}, plan={"doc": pdf.name, "blocks": blocks})


class Tally:
    """A Runner wrapper counting requests and forced output tokens."""

    def __init__(self, inner):
        self.inner, self.requests, self.output_tokens = inner, 0, 0

    def submit(self, tag, request):
        self.requests += 1
        self.output_tokens += request.sampling["max_tokens"]
        self.inner.submit(tag, request)

    def poll(self):
        return self.inner.poll()

    def has_pending(self):
        return self.inner.has_pending()


def run_side(name: str, runner, flow, jobs, window: int, clock: Clock) -> dict:
    from docpipe.models.scheduler import PageScheduler

    tally = Tally(runner)
    t0 = time.perf_counter()
    pages = list(PageScheduler(tally, flow, window).run(jobs))
    wall = time.perf_counter() - t0
    failed = [p.error for p in pages if not p.ok]
    busy = sum(v for k, v in clock.s.items() if k in ("prefill", "decode", "generate"))
    total = lambda stage: sum(p.timings_s.get(stage, 0.0) for p in pages)  # noqa: E731
    return {"name": name, "pages": len(pages), "failed_pages": len(failed), "errors": failed[:3],
            "requests": tally.requests, "output_tokens": tally.output_tokens, "wall_s": wall,
            "pages_per_s": len(pages) / wall, "output_tokens_per_s": tally.output_tokens / wall,
            "busy_fraction": busy / wall, "render_s": total("render"), "vision_s": clock.s.get("vision", 0.0),
            "prefill_s": clock.s.get("prefill", 0.0) - clock.s.get("vision", 0.0),
            "decode_s": clock.s.get("decode", 0.0), "generate_s": clock.s.get("generate", 0.0),
            "assembly_s": total("assemble")}


def hf_config(cfg, attn: str):
    from transformers import Qwen2VLConfig
    v = cfg.vision
    hf = Qwen2VLConfig(
        text_config=dict(vocab_size=cfg.vocab_size, hidden_size=cfg.hidden_size, intermediate_size=cfg.intermediate_size,
                         num_hidden_layers=cfg.num_hidden_layers, num_attention_heads=cfg.num_attention_heads,
                         num_key_value_heads=cfg.num_key_value_heads, rms_norm_eps=cfg.rms_norm_eps,
                         max_position_embeddings=cfg.max_position_embeddings, eos_token_id=cfg.eos_token_ids[0],
                         pad_token_id=0, rope_parameters={"rope_type": "default", "mrope_section": cfg.mrope_section,
                                                          "rope_theta": cfg.rope_theta}),
        vision_config=dict(depth=v.depth, embed_dim=v.embed_dim, hidden_size=v.hidden_size, num_heads=v.num_heads,
                           mlp_ratio=v.mlp_ratio, patch_size=v.patch_size, spatial_merge_size=v.spatial_merge_size,
                           temporal_patch_size=v.temporal_patch_size, in_channels=v.in_channels),
        image_token_id=cfg.image_token_id, vision_start_token_id=cfg.vision_start_token_id,
        vision_end_token_id=cfg.vision_end_token_id, tie_word_embeddings=cfg.tie_word_embeddings,
        video_token_id=151656 if cfg.vocab_size > 151656 else cfg.image_token_id + 4)
    hf._attn_implementation = attn
    return hf


class TransformersClient:
    """VLMClient over HF generate(): one batch per request kind and --hf-batch, forced lengths."""

    def __init__(self, model, engine_client, max_batch: int, clock: Clock):
        self.model, self.ec, self.max_batch, self.clock = model, engine_client, max_batch, clock

    def generate(self, requests):
        answers: dict[int, str] = {}
        order = sorted(range(len(requests)), key=lambda i: requests[i].kind != "layout")
        for kind_is_block in (False, True):
            idx = [i for i in order if (requests[i].kind != "layout") == kind_is_block]
            for k in range(0, len(idx), self.max_batch):
                chunk = idx[k:k + self.max_batch]
                for i, ans in zip(chunk, self._batch([requests[i] for i in chunk])):
                    answers[i] = ans
        return [answers[i] for i in range(len(requests))]

    def _batch(self, requests):
        import torch
        from transformers import GenerationConfig

        prompts = [self.ec.prepare(r)[0] for r in requests]
        lens = [r.sampling["max_tokens"] for r in requests]
        width = max(len(p.token_ids) for p in prompts)
        dev = self.model.device
        ids = torch.tensor([[0] * (width - len(p.token_ids)) + p.token_ids for p in prompts], device=dev)
        mask = torch.tensor([[0] * (width - len(p.token_ids)) + [1] * len(p.token_ids) for p in prompts], device=dev)
        kwargs = dict(input_ids=ids, attention_mask=mask,
                      pixel_values=torch.cat([p.pixel_values for p in prompts]).to(dev, self.model.dtype),
                      image_grid_thw=torch.tensor([g for p in prompts for g in p.image_grid_thw], device=dev))
        if "mm_token_type_ids" in inspect.signature(self.model.forward).parameters:
            # transformers >= 5 computes M-RoPE positions from it; without it generate() is not the model
            kwargs["mm_token_type_ids"] = (ids == self.model.config.image_token_id).int()
        gen = GenerationConfig(max_new_tokens=max(lens), do_sample=False, eos_token_id=None, pad_token_id=0)
        with torch.inference_mode():
            out = self.clock.wrap(self.model.generate, lambda *a, **k: "generate")(**kwargs, generation_config=gen)
        return [self.ec.codec.decode(row[width:width + n].tolist()) for row, n in zip(out, lens)]


def _engine_clock(client, clock: Clock) -> None:
    """Wrap the engine's execute and vision encoder (instance attributes: this process only)."""
    runner = client.engine.runner
    kind = lambda sched: "decode" if all(s.num_new_tokens == 1 for s in sched.scheduled) else "prefill"  # noqa: E731
    runner.execute = clock.wrap(runner.execute, kind)
    runner.model.encode_images = clock.wrap(runner.model.encode_images, lambda *a, **k: "vision")


def run_bench(model: str, pdfs: list[Path], num_pages: int, baseline: str, window: int, hf_batch: int,
              device: str, dtype: str, seed: int, replay: str | None) -> dict:
    import importlib.util

    import torch

    from docpipe.models.base import get_family
    from docpipe.models.engine_client import EngineClient
    from docpipe.models.scheduler import WaveRunner
    from inference.config import resolve_dtype
    from inference.models.loader import load_config

    mode = "graph" if device.startswith("cuda") and importlib.util.find_spec("inference.worker.cuda_graph") else "eager"
    cfg = load_config(model)
    torch_dtype = resolve_dtype(dtype, cfg.torch_dtype, torch.device(device))
    family = get_family("mineru25")
    engine_model, hf, tmp = model, None, None
    if baseline == "transformers":  # same weights on both sides: a random HF model saved for the engine to load
        from transformers import Qwen2VLForConditionalGeneration
        if model.startswith("dummy:"):
            with torch.device(device):
                hf = Qwen2VLForConditionalGeneration(hf_config(cfg, "sdpa")).to(torch_dtype).eval()
            tmp = tempfile.TemporaryDirectory(prefix="docpipe-bench-")
            hf.save_pretrained(tmp.name)
            engine_model = tmp.name
        else:
            hf = Qwen2VLForConditionalGeneration.from_pretrained(model, dtype=torch_dtype).to(device).eval()
    client = EngineClient.open(engine_model, family=family, device=device, dtype=torch_dtype, mode=mode)
    flow = _bench_flow(family, seed, replay)
    sides = []
    clock = Clock()
    _engine_clock(client, clock)
    sides.append(run_side("docpipe engine", client.runner(stop_loops=False), flow,
                          make_jobs(pdfs, num_pages, seed), window, clock))
    if hf is not None:
        clock = Clock()
        hf_client = TransformersClient(hf, client, hf_batch, clock)
        sides.append(run_side("transformers generate()", WaveRunner(hf_client), flow,
                              make_jobs(pdfs, num_pages, seed), window, clock))
    if tmp is not None:
        tmp.cleanup()
    out = {"model": model, "dtype": str(torch_dtype), "engine_mode": mode, "window_pages": window,
           "hf_batch": hf_batch, "seed": seed, "inputs": [str(p) for p in pdfs] if not num_pages else
           f"mineru-synthetic x{num_pages}", "sides": sides}
    if len(sides) == 2:
        out["pages_per_s_ratio"] = sides[0]["pages_per_s"] / sides[1]["pages_per_s"]
    return out


def print_table(result: dict) -> None:
    cols = ["pages", "wall_s", "pages_per_s", "output_tokens_per_s", "busy_fraction", "render_s", "vision_s",
            "prefill_s", "decode_s", "generate_s", "assembly_s"]
    print(f"{'side':<26}" + "".join(f"{c:>14}" for c in cols))
    for s in result["sides"]:
        print(f"{s['name']:<26}" + "".join(f"{s[c]:>14.3f}" if isinstance(s[c], float) else f"{s[c]:>14}"
                                             for c in cols))
        for err in s["errors"]:
            print(f"  failed page: {err}")
    if "pages_per_s_ratio" in result:
        print(f"pages/s ratio engine / transformers: {result['pages_per_s_ratio']:.2f}x")


def _device_name(device: str) -> str:
    import torch
    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def _versions() -> dict:
    import pymupdf
    import torch
    import transformers
    return {"python": platform.python_version(), "torch": torch.__version__, "transformers": transformers.__version__,
            "pymupdf": pymupdf.VersionBind, "platform": platform.platform()}


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
        started = time.time()
        result = run_bench(model, pdfs, pages, baseline, window, hf_batch, device, dtype, seed, replay)
        print_table(result)
        host = socket.gethostname()
        out = out or Path("inference/bench/results") / f"pipeline_{host}.json"
        doc = {"command": " ".join(["docpipe", "bench", "pipeline", *sys.argv[3:]]), "argv": sys.argv, "host": host,
               "device": _device_name(device), "versions": _versions(), "started_unix_s": started,
               "wall_s": time.time() - started, **result}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out}")
