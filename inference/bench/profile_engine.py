"""Where the engine's time goes, per workload: host phases of a step and
device kernels. Run on the device that matters:

    python -m inference.bench.profile_engine --preset mineru2.5 --out prof.json

Workloads (synthetic noise images, forced output lengths, see synthetic.py):
  layout   N layout pages (1036x1036 + 20 text tokens), first token only
  blocks   the block requests of N `mineru-synthetic` pages, first token only
  decode   C concurrent 476-px requests, T output tokens each
  decode1  one request, T output tokens

Each workload runs three times after a warm-up: (1) plain, for wall time and
host-phase totals (timers around scheduler.schedule/advance/resolve, batch
build, vision encoder, the step's launch, the wait for its tokens, sampling,
the processor); (2) with a device sync after each phase, which attributes device
time to phases (it removes host/device overlap, so its wall time is not the
figure to quote); (3) under torch.profiler, for the top kernels by device time.
The attention micro-benchmark times the vision encoder's attention variants
on a layout batch (flash varlen, cuDNN, flash, efficient; head dim 80 as is
and zero-padded to 128).
"""
from __future__ import annotations

import argparse
import json
import time
from collections import defaultdict

import torch

from inference.bench.call_proxy import CallProxy
from inference.bench.synthetic import noise_request
from inference.ops.timing import event_ms

BLOCK_SHAPES = [(896, 140)] * 8 + [(560, 56)] * 2 + [(896, 392), (560, 112)]  # mineru-synthetic, no jitter


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


class _Timers:
    def __init__(self, sync: bool):
        self.sync = sync
        self.seconds: dict[str, float] = defaultdict(float)
        self.calls: dict[str, int] = defaultdict(int)

    def timed(self, fn, key: str, sync: bool):
        """fn, its calls and seconds (after a device sync when `sync`) added under key."""
        def call(*args, **kwargs):
            start = time.perf_counter()
            out = fn(*args, **kwargs)
            if sync:
                _sync()
            self.seconds[key] += time.perf_counter() - start
            self.calls[key] += 1
            return out
        return call

    def wrap(self, obj, attr: str, key: str) -> None:
        setattr(obj, attr, self.timed(getattr(obj, attr), key, self.sync))


def _instrument(llm, sync: bool) -> tuple[_Timers, callable]:
    eng, runner = llm.engine, llm.engine.runner
    timers = _Timers(sync)
    wrapped = [(eng.scheduler, "schedule", "schedule"), (eng.scheduler, "advance", "advance"),
               (eng.scheduler, "resolve", "resolve"), (runner.batch_builder, "build", "batch_build"),
               (runner.model, "encode_images", "vision_encoder"),
               (runner, "_image_embeddings", "image_embeddings_total"), (runner, "launch", "launch_total"),
               (runner, "collect", "collect_wait")]
    for obj, attr, key in wrapped:
        timers.wrap(obj, attr, key)  # an instance attribute over the class's method
    processor, sampler = eng.processor, runner.sampler
    # callable objects, timed through a proxy (host time: no sync after them)
    eng.processor = CallProxy(processor, timers.timed(processor, "processor", sync=False))
    runner.sampler = CallProxy(sampler, timers.timed(sampler, "sampler_launch", sync=False))

    def restore():
        eng.processor, runner.sampler = processor, sampler
        for obj, attr, _ in wrapped:
            del obj.__dict__[attr]  # the class's method shows through again

    return timers, restore


def _workload(name: str, cfg, n: int, tokens: int):
    from inference.sampling import SamplingParams

    import numpy as np

    ids = (cfg.vision_start_token_id, cfg.image_token_id, cfg.vision_end_token_id)
    rng = np.random.default_rng(0)
    forced = lambda k: SamplingParams(temperature=0, ignore_eos=True, max_tokens=k)  # noqa: E731
    if name == "layout":
        return [noise_request(1036, 1036, ids, rng) for _ in range(n)], forced(1)
    if name == "blocks":
        return [noise_request(w, h, ids, rng) for _ in range(n) for w, h in BLOCK_SHAPES], forced(1)
    if name == "decode":
        return [noise_request(476, 476, ids, rng) for _ in range(n)], forced(tokens)
    if name == "decode1":
        return [noise_request(476, 476, ids, rng)], forced(tokens)
    raise ValueError(f"unknown workload {name!r}")


def _kernels(llm, reqs, params, top: int) -> dict:
    from torch.profiler import ProfilerActivity, profile

    with profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA]) as prof:
        llm.generate(reqs, params)
        _sync()
    rows = []
    for evt in prof.key_averages():
        dev_us = getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0)
        if dev_us > 0 and evt.device_type is not None and "CUDA" in str(evt.device_type):
            rows.append((evt.key, dev_us, evt.count))
    rows.sort(key=lambda r: -r[1])
    total = sum(r[1] for r in rows)
    return {"device_kernel_ms": total / 1000,
            "top": [{"kernel": k[:90], "ms": us / 1000, "count": c, "share": us / max(total, 1)} for k, us, c in rows[:top]]}


def profile_workload(llm, cfg, name: str, n: int, tokens: int, top: int = 15) -> dict:
    reqs, params = _workload(name, cfg, n, tokens)
    llm.generate(reqs[: max(1, len(reqs) // 4)], params)  # warm-up: graphs, kernels, allocator
    out: dict = {"requests": len(reqs), "max_tokens": params.max_tokens}
    for sync in (False, True):
        timers, restore = _instrument(llm, sync)
        _sync()
        start = time.perf_counter()
        results = llm.generate(reqs, params)
        _sync()
        wall = time.perf_counter() - start
        restore()
        key = "synced" if sync else "plain"
        out[key] = {"wall_s": wall, "steps": timers.calls.get("schedule", 0),
                    "phases_s": dict(timers.seconds), "calls": dict(timers.calls)}
        if not sync:
            out["output_tokens"] = sum(len(r.token_ids) for r in results)
    out["kernels"] = _kernels(llm, reqs, params, top)
    return out


def attention_variants(batch: int = 8, length: int = 5476, heads: int = 16, dim: int = 80) -> dict:
    import torch.nn.functional as F
    from torch.nn.attention import SDPBackend, sdpa_kernel

    from inference.ops.cuda.vision_attention import _varlen_attn, varlen_available

    dev, dt = "cuda", torch.bfloat16
    q, k, v = (torch.randn(batch * length, heads, dim, device=dev, dtype=dt) for _ in range(3))
    cu = torch.arange(0, (batch + 1) * length, length, device=dev, dtype=torch.int32)
    scale = dim ** -0.5
    flops = 4 * batch * length * length * heads * dim
    ref = None
    variants = {}

    def dense(d_pad: int):
        qb, kb, vb = (t.view(batch, length, heads, dim).transpose(1, 2) for t in (q, k, v))
        if d_pad != dim:
            qb, kb, vb = (F.pad(t, (0, d_pad - dim)) for t in (qb, kb, vb))
        return qb, kb, vb

    if varlen_available(q):
        variants["flash_varlen_d80"] = lambda: _varlen_attn(q, k, v, cu, cu, length, length, scale=scale)
    for backend in ("CUDNN_ATTENTION", "FLASH_ATTENTION", "EFFICIENT_ATTENTION"):
        for d_pad in (dim, 128):
            inputs = dense(d_pad)

            def run(inputs=inputs, backend=backend):
                with sdpa_kernel([getattr(SDPBackend, backend)]):
                    o = F.scaled_dot_product_attention(*inputs, scale=scale)
                return o[..., :dim].transpose(1, 2).reshape(batch * length, heads, dim)

            variants[f"{backend.split('_')[0].lower()}_d{d_pad}"] = run
    try:
        import flash_attn_interface  # noqa: F401  (FA3, Hopper)
        variants["fa3_varlen"] = lambda: flash_attn_interface.flash_attn_varlen_func(
            q, k, v, cu, cu, length, length, softmax_scale=scale)[0]
    except Exception:  # not installed
        pass
    res = {}
    for name, fn in variants.items():
        try:
            o = fn()
            torch.cuda.synchronize()
            ref = o.float() if ref is None else ref
            err = float((o.float() - ref).norm() / ref.norm())
            ms = event_ms(fn, 5)
            res[name] = {"ms": ms, "TFLOPs": flops / ms / 1e9, "rel_err_vs_first": err}
        except Exception as exc:  # backend refuses the shape
            res[name] = {"error": f"{type(exc).__name__}: {str(exc)[:120]}"}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--preset", default="mineru2.5")
    ap.add_argument("--workloads", default="decode1,decode,layout,blocks")
    ap.add_argument("--pages", type=int, default=16)
    ap.add_argument("--concurrency", type=int, default=256)
    ap.add_argument("--tokens", type=int, default=128)
    ap.add_argument("--max-num-seqs", type=int, default=256)
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    from inference import LLM

    res: dict = {"command": "python -m inference.bench.profile_engine " + " ".join(
        f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if v is not None),
        "device_name": torch.cuda.get_device_name() if args.device == "cuda" else "cpu", "torch": torch.__version__}
    if args.device == "cuda":
        res["attention_variants"] = attention_variants()
        print(json.dumps(res["attention_variants"], indent=1), flush=True)
    llm = LLM(model=f"dummy:{args.preset}", dtype="bfloat16" if args.device == "cuda" else "float32",
              device=args.device, max_num_seqs=args.max_num_seqs)
    cfg = llm.engine.model_config
    for name in args.workloads.split(","):
        n = args.concurrency if name == "decode" else args.pages
        tokens = args.tokens * (2 if name == "decode1" else 1)
        res[name] = profile_workload(llm, cfg, name, n, tokens)
        w = res[name]
        print(f"== {name}: wall {w['plain']['wall_s']:.3f}s steps {w['plain']['steps']} "
              f"kernels {w['kernels']['device_kernel_ms']:.1f} ms", flush=True)
        for mode in ("plain", "synced"):
            print(f"  {mode:7}", {k: round(v, 4) for k, v in sorted(w[mode]["phases_s"].items())}, flush=True)
        for row in w["kernels"]["top"][:12]:
            print(f"    {row['ms']:9.2f} ms {row['share']:6.1%} x{row['count']:<6} {row['kernel']}", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump(res, f, indent=1)


if __name__ == "__main__":
    main()
