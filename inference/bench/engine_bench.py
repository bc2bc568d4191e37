"""`docpipe bench engine`: our engine and transformers on the same weights
and inputs, in one process, one table.

Sections (each a dict in the JSON; a failing section records its error and
the rest still run):
  ceilings    device copy bandwidth and bf16 matmul rate, measured now
  correctness teacher-forced logits of ours vs transformers (relative error),
              greedy tokens in the bench dtype and, optionally, in fp32
  ours        decode TPOT at batch 1; decode throughput with N concurrent
              requests; layout-stage prefill pages/s; peak memory, KV pool
  hf          generate() TTFT on a layout page, TPOT at batch 1 and B
"""
from __future__ import annotations

import gc
import platform
import statistics
import sys
import tempfile
import time
import traceback
from dataclasses import dataclass

import torch

from inference.bench import hf_reference as hf
from inference.bench.kernel_profile import kernel_profile, requested
from inference.bench.machine import ceilings, device_name
from inference.models.loader import load_config
from inference.sampling import SamplingParams


@dataclass
class BenchSpec:
    preset: str = "mineru2.5"  # dummy preset whose shape is benchmarked
    dtype: str = "bfloat16"
    device: str = "cuda"
    mode: str = "graph"  # our decode mode
    decode_image_px: int = 476  # ~289 image tokens, a typical block crop
    decode_tokens: int = 512  # output tokens per request in decode runs
    concurrency: int = 256  # requests in the throughput run
    layout_pages: int = 64  # 1036x1036 pages in the prefill run
    hf_batch: int = 64  # generate() batch for the baseline throughput
    hf_tokens: int = 128  # generate() new tokens in the baseline runs
    fp32_check: bool = True  # exact greedy tokens vs transformers in fp32


LAYOUT_PIXELS = 1036 * 1036  # processor cap: the workload's layout page passes unresized (1369 image tokens)


def save_processor(cfg, path: str) -> None:
    """The checkpoint's image processor with the workload's pixel cap (the
    transformers default, 1280 tokens, would shrink layout pages to 980 px)."""
    from transformers import Qwen2VLImageProcessor

    Qwen2VLImageProcessor(patch_size=cfg.vision.patch_size, merge_size=cfg.vision.spatial_merge_size,
                          temporal_patch_size=cfg.vision.temporal_patch_size, min_pixels=56 * 56,
                          max_pixels=LAYOUT_PIXELS).save_pretrained(path)


def _sync(device: str) -> None:
    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free(device: str) -> None:
    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def request(cfg, side_w: int, side_h: int, seed: int, text_tokens: int = 20) -> dict:
    import numpy as np

    from inference.bench.synthetic import noise_request

    ids = (cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id)
    return noise_request(side_w, side_h, ids, np.random.default_rng(seed), text_tokens)


LAYOUT_TIMED_PASSES = 3  # layout-prefill passes timed after the first; the figure is their median
LAYOUT_PROBE_SEED = 5  # the layout page both sides see (logits probe, transformers' TTFT)


def forced(n: int) -> SamplingParams:
    return SamplingParams(temperature=0, ignore_eos=True, max_tokens=n)


def run_ours(spec: BenchSpec, ckpt: str, cfg, res: dict) -> None:
    from inference import LLM

    llm = LLM(model=ckpt, dtype=spec.dtype, device=spec.device, mode=spec.mode)
    ours = res["ours"] = {"num_kv_blocks": llm.engine.runner.num_kv_blocks,
                          "kv_block_size": llm.config.kv_block_size, "mode": spec.mode,
                          "max_num_batched_tokens": llm.config.max_num_batched_tokens}
    # correctness probe: greedy tokens + logits, compared with transformers later
    probe = request(cfg, spec.decode_image_px, spec.decode_image_px, seed=7)
    out = llm.generate([probe], SamplingParams(temperature=0, ignore_eos=True, max_tokens=16, return_logits=True))[0]
    res["_probe"] = {"tokens": out.token_ids, "logits": out.logits}
    # and a layout page: its vision calls are large enough for the fused fc1 GEMM (ops/cuda/gemm.py)
    page = request(cfg, 1036, 1036, seed=LAYOUT_PROBE_SEED)
    out = llm.generate([page], SamplingParams(temperature=0, ignore_eos=True, max_tokens=4, return_logits=True))[0]
    res["_layout_probe"] = {"tokens": out.token_ids, "logits": out.logits}
    # decode at batch 1
    one = request(cfg, spec.decode_image_px, spec.decode_image_px, seed=1)
    llm.generate([one], forced(32))  # warm-up: graph capture, allocator
    tpots = [llm.generate([one], forced(spec.decode_tokens))[0].tpot_s for _ in range(3)]
    ours["bs1_tpot_ms"] = 1000 * statistics.median(tpots)
    ours["bs1_tok_per_s"] = 1000 / ours["bs1_tpot_ms"]
    # decode throughput with many concurrent requests
    # Each figure is the second of two identical passes: the first compiles kernels, captures the
    # graphs of every batch/width bucket the run reaches and builds attention plans (reported apart).
    reqs = [request(cfg, spec.decode_image_px, spec.decode_image_px, seed=100 + i) for i in range(spec.concurrency)]
    for first_pass in (True, False):
        _sync(spec.device); t = time.perf_counter()
        outs = llm.generate(reqs, forced(spec.decode_tokens))
        _sync(spec.device); wall = time.perf_counter() - t
        if first_pass:
            ours["first_pass_tok_per_s"] = sum(len(o.token_ids) for o in outs) / wall
    n_out = sum(len(o.token_ids) for o in outs)
    last_first = max(o.ttft_s for o in outs)
    ours.update(concurrency=spec.concurrency, output_tokens=n_out, wall_s=wall, tok_per_s=n_out / wall,
                decode_phase_tok_per_s=(n_out - len(outs)) / max(wall - last_first, 1e-9),
                tpot_p50_ms=1000 * statistics.median(o.tpot_s for o in outs))
    # layout-stage prefill: 1036x1036 pages, first token only
    pages = [request(cfg, 1036, 1036, seed=1000 + i) for i in range(spec.layout_pages)]
    # the figure: the median of LAYOUT_TIMED_PASSES passes after the first (which builds kernels and picks
    # the vision attention); DOCPIPE_PROFILE_KERNELS=1 adds a last, profiled pass (slower, not counted)
    profiled = requested() and spec.device.startswith("cuda")
    walls = []
    for n in range(1 + LAYOUT_TIMED_PASSES + profiled):
        with kernel_profile(n > LAYOUT_TIMED_PASSES) as kernels:
            _sync(spec.device); t = time.perf_counter()
            llm.generate(pages, forced(1))
            _sync(spec.device); elapsed = time.perf_counter() - t
        if n == 0:
            ours["first_pass_layout_pages_per_s"] = len(pages) / elapsed
        elif n <= LAYOUT_TIMED_PASSES:
            walls.append(elapsed)
        else:
            ours["layout_prefill_kernels"] = kernels.report(elapsed)
    wall = statistics.median(walls)
    ours.update(layout_pages=len(pages), layout_prefill_pages_per_s=len(pages) / wall, layout_prefill_walls_s=walls,
                layout_prompt_tokens=len(llm.engine.processor(pages[0]).token_ids))
    if spec.device.startswith("cuda"):
        ours["peak_memory_GiB"] = torch.cuda.max_memory_allocated() / 2**30
        from inference.ops.cuda.vision_attention import _CHOICE
        ours["vision_attention_choices"] = {repr(k): v for k, v in _CHOICE.items()}
        ours["kv_pool_GiB"] = llm.engine.runner.kv_pool.numel() * llm.engine.runner.kv_pool.element_size() / 2**30
    res["_processor"] = llm.engine.processor
    del llm


def run_hf(spec: BenchSpec, ckpt: str, cfg, res: dict) -> None:
    dtype = getattr(torch, spec.dtype)
    model = hf.load(ckpt, dtype, spec.device)
    proc = res["_processor"]
    image_id = cfg.image_token_id
    out = res["hf"] = {}
    probe = res.pop("_probe")
    ref = hf.teacher_forced_logits(model, proc(request(cfg, spec.decode_image_px, spec.decode_image_px, seed=7)),
                                   probe["tokens"], image_id, spec.device)
    err = (probe["logits"] - ref).norm() / ref.norm()
    res["correctness"] = {"dtype": spec.dtype, "teacher_forced_logits_rel_err": float(err),
                          "greedy_tokens_match_argmax": bool((ref.argmax(-1) == torch.tensor(probe["tokens"])).all())}
    layout_page = proc(request(cfg, 1036, 1036, seed=LAYOUT_PROBE_SEED))
    layout = res.pop("_layout_probe", None)  # absent when our side failed after its first probe
    if layout is not None:
        ref = hf.teacher_forced_logits(model, layout_page, layout["tokens"], image_id, spec.device)
        res["correctness"]["layout_page_teacher_forced_logits_rel_err"] = float(
            (layout["logits"] - ref).norm() / ref.norm())
    page = hf.inputs([layout_page], model, image_id, spec.device)
    hf.generate_timed(model, page, 1, spec.device)
    out["layout_ttft_ms"] = 1000 * statistics.median(hf.generate_timed(model, page, 1, spec.device)[0] for _ in range(3))
    for batch in (1, spec.hf_batch):
        kw = hf.inputs([proc(request(cfg, spec.decode_image_px, spec.decode_image_px, seed=200 + i)) for i in range(batch)],
                       model, image_id, spec.device)
        hf.generate_timed(model, kw, 1, spec.device)  # warm: this batch's shapes
        step_s = hf.decode_step_s(model, kw, spec.hf_tokens, spec.device)  # step times inside one generate()
        out[f"bs{batch}_tpot_ms"] = 1000 * step_s
        out[f"bs{batch}_tok_per_s"] = batch / step_s
    del model


def fp32_tokens(spec: BenchSpec, ckpt: str, cfg, res: dict) -> None:
    """Exact greedy tokens in fp32 (bf16 random weights make argmax ties common)."""
    from inference import LLM

    req = request(cfg, 224, 224, seed=11)
    llm = LLM(model=ckpt, dtype="float32", device=spec.device, mode=spec.mode, num_kv_blocks=256)
    ours = llm.generate([req], SamplingParams(temperature=0, max_tokens=32, ignore_eos=True))[0].token_ids
    proc = llm.engine.processor
    del llm
    _free(spec.device)
    model = hf.load(ckpt, torch.float32, spec.device)
    _, theirs = hf.generate_timed(model, hf.inputs([proc(req)], model, cfg.image_token_id, spec.device), 32, spec.device)
    del model
    res["correctness"]["fp32_greedy_tokens_identical"] = ours == theirs[0].tolist()
    res["correctness"]["fp32_tokens_compared"] = len(ours)


def run(spec: BenchSpec, command: str) -> dict:
    import transformers

    cfg = load_config(f"dummy:{spec.preset}")
    res: dict = {"command": command, "spec": spec.__dict__, "python": sys.version.split()[0],
                 "torch": torch.__version__, "transformers": transformers.__version__, "host": platform.node(),
                 "device_name": device_name(spec.device)}
    steps = [("ceilings", lambda: res.update(ceilings=ceilings(spec.device)))]
    with tempfile.TemporaryDirectory() as ckpt:
        steps += [("checkpoint", lambda: (hf.save_random_checkpoint(cfg, ckpt, getattr(torch, spec.dtype), spec.device),
                                          save_processor(cfg, ckpt))),
                  ("ours", lambda: run_ours(spec, ckpt, cfg, res)),
                  ("hf", lambda: run_hf(spec, ckpt, cfg, res))]
        if spec.fp32_check:
            steps.append(("fp32", lambda: fp32_tokens(spec, ckpt, cfg, res)))
        for name, fn in steps:
            t = time.perf_counter()
            try:
                fn()
            except Exception as e:  # record and continue: one broken section must not hide the others
                res.setdefault("errors", {})[name] = "".join(traceback.format_exception(e))[-2000:]
            res.setdefault("section_s", {})[name] = time.perf_counter() - t
            _free(spec.device)
    res.pop("_processor", None)
    res.pop("_probe", None)
    res.pop("_layout_probe", None)
    return res
