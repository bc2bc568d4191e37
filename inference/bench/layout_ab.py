"""Layout-stage prefill pages/s under engine variants, one process, one model.

    python3 -m inference.bench.layout_ab --out FILE.json [--pages 64] [--reps 3] [--prepare ahead]

The `docpipe bench engine` layout figure (64 1036x1036 noise pages of
dummy:mineru2.5, bf16, first token only, LLM.generate) for each setting of
`prepare_ahead` (prompt preparation on a thread or inline), alternating, each
the median of --reps timed passes after one untimed pass. The vision
attention choice is per process: run once per DOCPIPE_VISION_ATTN or
DOCPIPE_VISION_GRAPH_CONFIG value (or PYTORCH_TUNABLEOP_* setting) to compare
kernels; those variables and the choices made are recorded. DOCPIPE_PROFILE_KERNELS=1 adds one
pass under the kernel profiler after the timed ones (its table in the JSON, the top kernels printed;
its wall is not a figure). --timeline records one more unprofiled pass step by step (two CUDA events a
step, no sync: host launch, device time, device idle before each step, the host's time to the first
launch, and the device time from the pass's start to the first step: idle, or running the first
requests' uploads and patches), with the last --prepare setting. --max-batched-tokens sets the
step's token budget (the engine's default by device when left out). --fresh-pages gives every pass
new page images (session 12 saw some passes' first uploads stall 5-8 ms a page; the default
reuses the same images every pass, which a document stream never does). Every timed pass also records
the cyclic collector's pauses (gc_pauses.GcPauses: count and ms by generation; "gc" in the JSON rows).
"""
from __future__ import annotations

import argparse
import itertools
import json
import os
import statistics
import time

import torch

from inference import LLM
from inference.bench.engine_bench import forced, request
from inference.bench.kernel_profile import kernel_profile, requested, top_lines
from inference.gc_pauses import GcPauses
from inference.models.loader import load_config


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--pages", type=int, default=64)
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--prepare", default="inline,ahead", help="comma-separated: inline, ahead")
    ap.add_argument("--max-batched-tokens", type=int)
    ap.add_argument("--timeline", action="store_true")
    ap.add_argument("--fresh-pages", action="store_true",
                    help="new page images for every pass (made before its clock starts), as a stream of documents "
                         "brings; default: the same images every pass")
    ap.add_argument("--out")
    args = ap.parse_args()
    env = {k: v for k, v in sorted(os.environ.items()) if k.startswith(("DOCPIPE_", "PYTORCH_TUNABLEOP"))}
    llm = LLM(model="dummy:mineru2.5", dtype="bfloat16", device="cuda", gpu_memory_utilization=0.5,
              max_num_batched_tokens=args.max_batched_tokens)
    cfg = load_config("dummy:mineru2.5")
    fixed = [request(cfg, 1036, 1036, seed=1000 + i) for i in range(args.pages)]
    firsts = itertools.count(1000, args.pages)  # --fresh-pages: each pass its own seeds

    def pass_pages() -> list[dict]:
        """The pages of the next pass (made before its clock starts)."""
        if not args.fresh_pages:
            return fixed
        first = next(firsts)
        return [request(cfg, 1036, 1036, seed=first + i) for i in range(args.pages)]

    walls: dict[str, list[float]] = {name: [] for name in args.prepare.split(",")}
    gc_ms: dict[str, list[dict]] = {name: [] for name in walls}  # the collector's pauses in each timed pass
    if not set(walls) <= {"inline", "ahead"}:
        ap.error(f"--prepare {args.prepare!r}: expected inline and/or ahead")
    for rep in range(args.reps + 1):
        for name in walls:
            llm.config.prepare_ahead = name == "ahead"
            pages = pass_pages()
            torch.cuda.synchronize()
            with GcPauses() as pauses:
                t = time.perf_counter()
                llm.generate(pages, forced(1))
                torch.cuda.synchronize()
            if rep:  # the first pass compiles, captures and picks kernels
                walls[name].append(time.perf_counter() - t)
                gc_ms[name].append(pauses.report())
    kernels = None
    if requested():
        pages = pass_pages()
        with kernel_profile(True) as table:
            t = time.perf_counter()
            llm.generate(pages, forced(1))
            torch.cuda.synchronize()
            wall = time.perf_counter() - t  # before the profiler's shutdown and trace processing
        kernels = table.report(wall)
        print(f"profiled pass: {kernels['device_kernel_ms']:.1f} ms of kernels, busy {kernels['kernel_share_of_wall']:.1%}")
        print("\n".join(top_lines(kernels, 25)))
    timeline = step_timeline(llm, pass_pages()) if args.timeline else None
    from inference.ops.cuda.vision_attention import _CHOICE
    rows = {name: {"pages_per_s": args.pages / statistics.median(w), "walls_s": w, "gc": gc_ms[name]}
            for name, w in walls.items()}
    for name, row in rows.items():
        print(f"{env or 'defaults'} prepare={name}: "
              f"{row['pages_per_s']:.2f} pages/s (walls {[round(x, 3) for x in row['walls_s']]}, "
              f"gc pauses ms {[g['total_ms'] for g in row['gc']]})", flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": "python3 -m inference.bench.layout_ab", "device": torch.cuda.get_device_name(),
                       "torch": torch.__version__, "pages": args.pages, "reps": args.reps,
                       "fresh_pages": args.fresh_pages,
                       "env": env,
                       "max_num_batched_tokens": llm.config.max_num_batched_tokens,
                       "choices": {repr(k): v for k, v in _CHOICE.items()}, "rows": rows,
                       "kernels": kernels, "timeline": timeline}, f, indent=1)


def step_timeline(llm, pages: list[dict]) -> dict:
    """One pass with a CUDA event pair around every step's launch (docpipe's DeviceBusy): the
    step log, the device idle between steps, and how long the host took to its first launch."""
    from docpipe.bench.device_busy import DeviceBusy  # the bench's step recorder (no sync inside)

    busy = DeviceBusy.attach(llm.engine.runner)
    torch.cuda.synchronize()
    begin = torch.cuda.Event(enable_timing=True)
    t = time.perf_counter()
    begin.record()
    llm.generate(pages, forced(1))
    torch.cuda.synchronize()
    wall = time.perf_counter() - t
    report = busy.report(wall)
    first = busy.steps[0]
    report.update(wall_s=wall, host_to_first_launch_ms=(first[4] - t) * 1e3,
                  device_before_first_ms=begin.elapsed_time(first[1]))
    print(f"timeline: wall {wall * 1e3:.1f} ms, {len(busy.steps)} steps, first launch after "
          f"{report['host_to_first_launch_ms']:.1f} ms (device {report['device_before_first_ms']:.1f} ms to it), "
          f"idle between steps {report['device_idle_between_steps_s'] * 1e3:.1f} ms, "
          f"collect waits {report['host_collect_wait_s'] * 1e3:.1f} ms")
    print("  step: kind, host launch start ms, host launch ms, device ms, idle before ms")
    for row in report["step_log"]:
        print("  ", row)
    return report


if __name__ == "__main__":
    main()
