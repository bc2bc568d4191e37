"""A timeline of a window of engine steps: where the device waits for the host.

DOCPIPE_TRACE=PATH (a .json.gz) makes `docpipe bench pipeline` run
torch.profiler (host ops, CUDA runtime calls, device kernels) over a window
of steps of its timed pass (DOCPIPE_TRACE_STEPS=FIRST:COUNT, default 80:24),
write the Chrome trace to PATH and a summary into the run's JSON:

- per step kind: host launch time, the span from the step's first kernel to
  its last, and the device time inside that span in which no kernel ran;
- device gaps (no kernel running) by what the host was doing when the
  next kernel was launched: a gap whose next kernel was launched after the
  device went idle is host-bound, and is charged to the phase of the step
  (prepare, vision, lm, sample) and the innermost host op that launched it;
- CUDA runtime calls by summed host time (a long cudaLaunchKernel means a full
  launch queue; synchronising calls show as such).

Phases are named by wrapping the runner's batch build, image encoding, LM
forward and sampler (instance attributes, this process only, while tracing).
Diagnostic only: the profiler costs host time.
"""
from __future__ import annotations

import bisect
import collections
import gzip
import json
import os
from pathlib import Path

from inference.bench.call_proxy import CallProxy
from inference.bench.kernel_profile import union_us

ENV = "DOCPIPE_TRACE"
STEPS_ENV = "DOCPIPE_TRACE_STEPS"
WARMUP = 3  # profiled steps before the window, events dropped
_PHASES = {"prepare": ("batch_builder", "build"), "vision": ("", "_encode"),  # "": the runner itself
           "lm": ("model", "forward")}  # and the sampler (called as an object): "sample"


def requested() -> str | None:
    return os.environ.get(ENV) or None


def _window() -> tuple[int, int, bool]:
    """(first, count, first counts prefill steps only): FIRST:COUNT, or pFIRST:COUNT to start at
    the FIRST-th prefill step (prefill steps come in clusters: a step number may miss them all)."""
    text = os.environ.get(STEPS_ENV, "80:24")
    first, _, count = text.partition(":")
    try:
        return int(first.lstrip("p")), int(count or 24), first.startswith("p")
    except ValueError:
        raise ValueError(f"{STEPS_ENV}={text!r}: expected FIRST:COUNT or pFIRST:COUNT") from None


class StepTrace:
    """Wraps runner.launch; profiles steps FIRST..FIRST+COUNT-1 of the timed pass."""

    def __init__(self, runner, path: str):
        self.runner, self.path = runner, Path(path)
        self.first, self.count, self.by_prefill = _window()
        self.step = 0  # steps (or prefill steps) launched in this pass, until the window opens
        self.in_window = 0
        self.prof = None
        self.summary: dict | None = None
        self.done = False  # the window was traced and written
        self._launch = runner.launch

    @classmethod
    def attach(cls, runner, path: str | None) -> "StepTrace | None":
        import torch
        if not path or not torch.cuda.is_available():
            return None
        trace = cls(runner, path)
        runner.launch = trace._traced_launch
        return trace

    def reset(self) -> None:
        self.step = self.in_window = 0

    def _traced_launch(self, sched):
        import torch
        from docpipe.bench.timing import step_kind

        kind = step_kind(sched)
        if self.prof is None and not self.done:
            # the profiler starts WARMUP steps early: its first steps carry its own start-up (CUPTI)
            counts = kind == "prefill" or not self.by_prefill
            if counts and self.step >= max(self.first - WARMUP, 0):
                self._start(min(WARMUP, self.first))
            self.step += counts
        if self.prof is None:
            return self._launch(sched)
        with torch.profiler.record_function(f"step:{kind}"):
            out = self._launch(sched)
        self.prof.step()
        self.in_window += 1
        if self.in_window == self.warmup + self.count:
            self._stop()
        return out

    def _start(self, warmup: int) -> None:
        import torch

        self.warmup = warmup
        from torch.profiler import ProfilerActivity, profile, schedule

        self._wrapped = []  # (object, attribute, its instance value before or None)
        for phase, (owner, name) in _PHASES.items():
            obj = getattr(self.runner, owner, None) if owner else self.runner
            if obj is None or not hasattr(obj, name):
                continue
            self._wrapped.append((obj, name, obj.__dict__.get(name)))
            setattr(obj, name, _labelled(getattr(obj, name), f"phase:{phase}"))
        if getattr(self.runner, "sampler", None) is not None:
            self._wrapped.append((self.runner, "sampler", self.runner.sampler))
            self.runner.sampler = CallProxy(self.runner.sampler, _labelled(self.runner.sampler, "phase:sample"))
        torch.cuda.synchronize()
        self.prof = profile(activities=[ProfilerActivity.CPU, ProfilerActivity.CUDA],
                            schedule=schedule(wait=0, warmup=warmup, active=self.count, repeat=1))
        self.prof.__enter__()

    def _stop(self) -> None:
        import torch

        torch.cuda.synchronize()
        self.prof.__exit__(None, None, None)
        for obj, name, before in reversed(self._wrapped):
            if before is None:
                delattr(obj, name)  # back to the class attribute
            else:
                setattr(obj, name, before)
        self.runner.launch = self._launch  # the window is over: later steps run unwrapped
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.prof.export_chrome_trace(str(self.path))  # torch gzips a path ending in .gz
        self.prof = None
        self.done = True

    def report(self) -> dict:
        """The window's summary (read back from the trace after the timed pass, not inside it)."""
        if not self.done:
            return {"note": f"the timed pass ended before step {self.first + self.count}"}
        if self.summary is None:
            self.summary = summarize(load_trace(self.path))
            self.summary.update(steps=f"{self.first}:{self.count}", trace=str(self.path))
        return self.summary


def _labelled(fn, label: str):
    import torch

    def call(*args, **kwargs):
        with torch.profiler.record_function(label):
            return fn(*args, **kwargs)
    return call


def load_trace(path) -> list[dict]:
    opener = gzip.open if str(path).endswith(".gz") else open
    with opener(path, "rt") as f:
        return json.load(f)["traceEvents"]


_DEVICE_CATS = ("kernel", "gpu_memcpy", "gpu_memset")


def _by_thread(events) -> tuple[dict, dict]:
    """Events per thread id in start order (a stable sort: ties keep the trace's order), and each
    thread's start times, for bisect."""
    lists: dict = collections.defaultdict(list)
    for e in sorted(events, key=lambda e: e["ts"]):
        lists[e["tid"]].append(e)
    return lists, {tid: [e["ts"] for e in lst] for tid, lst in lists.items()}


def summarize(events: list[dict], gap_us: float = 20.0, top: int = 15) -> dict:
    """See the module doc. Times in the trace are microseconds."""
    complete = [e for e in events if e.get("ph") == "X" and "dur" in e]
    kernels = sorted((e for e in complete if e.get("cat") in _DEVICE_CATS), key=lambda e: e["ts"])
    runtime = [e for e in complete if e.get("cat") == "cuda_runtime" or e.get("cat") == "cuda_driver"]
    host = [e for e in complete if e.get("cat") in ("cpu_op", "user_annotation")]
    launch_of = {e["args"].get("correlation"): e for e in runtime if "args" in e}

    # host intervals by thread, for "which op / phase / step encloses this runtime call"
    by_tid, starts_of = _by_thread(host)

    def enclosing(call) -> list[dict]:
        lst = by_tid.get(call["tid"], [])
        i = bisect.bisect_right(starts_of.get(call["tid"], []), call["ts"])
        return [e for e in lst[max(0, i - 400):i] if e["ts"] + e["dur"] >= call["ts"]]

    def labels(call) -> tuple[str, str, str]:
        outer = enclosing(call)
        step = next((e["name"][5:] for e in outer if e["name"].startswith("step:")), "outside")
        phase = next((e["name"][6:] for e in reversed(outer) if e["name"].startswith("phase:")), "other")
        ops = [e for e in outer if e.get("cat") == "cpu_op"]
        op = min(ops, key=lambda e: e["dur"])["name"] if ops else "-"
        return step, phase, op

    gaps_by_phase: collections.Counter = collections.Counter()
    gaps_by_op: collections.Counter = collections.Counter()
    device_wait: collections.Counter = collections.Counter()  # gaps with the launch already queued
    reach = None
    for k in kernels:
        if reach is not None and k["ts"] - reach > gap_us:
            gap = k["ts"] - reach
            call = launch_of.get(k.get("args", {}).get("correlation"))
            if call is not None and call["ts"] + call["dur"] > reach:  # launched after the device went idle
                step, phase, op = labels(call)
                gaps_by_phase[f"{step}/{phase}"] += gap
                gaps_by_op[f"{step}/{phase}/{op}"] += gap
            else:
                device_wait["launched before the device went idle"] += gap
        end = k["ts"] + k["dur"]
        reach = end if reach is None else max(reach, end)

    # device work by the launch that queued it (a graph launch queues many kernels under one id), and
    # each thread's launches by start: a step's kernels are those of the launches inside its span
    kernels_of: dict = collections.defaultdict(list)
    for k in kernels:
        kernels_of[k.get("args", {}).get("correlation")].append(k)
    calls_of, call_starts = _by_thread(c for c in runtime if "args" in c)
    per_kind: dict = {}
    for s in (e for e in host if e["name"].startswith("step:")):
        kind = s["name"][5:]
        lo, hi = s["ts"], s["ts"] + s["dur"]
        starts = call_starts.get(s["tid"], [])
        calls = calls_of[s["tid"]][bisect.bisect_left(starts, lo):bisect.bisect_right(starts, hi)]
        ids = dict.fromkeys(c["args"].get("correlation") for c in calls)  # each launch once
        ks = [k for i in ids for k in kernels_of.get(i, ())]
        row = per_kind.setdefault(kind, {"steps": 0, "host_launch_ms": 0.0, "device_span_ms": 0.0,
                                         "device_kernel_ms": 0.0, "kernels": 0})
        row["steps"] += 1
        row["host_launch_ms"] += s["dur"] / 1e3
        if ks:
            span_lo = min(k["ts"] for k in ks)
            span_hi = max(k["ts"] + k["dur"] for k in ks)
            row["device_span_ms"] += (span_hi - span_lo) / 1e3
            row["device_kernel_ms"] += union_us([(k["ts"], k["ts"] + k["dur"]) for k in ks]) / 1e3
            row["kernels"] += len(ks)
    phase_host: collections.Counter = collections.Counter()
    for e in host:
        if e["name"].startswith("phase:"):
            phase_host[e["name"][6:]] += e["dur"] / 1e3
    rt: collections.Counter = collections.Counter()
    rt_n: collections.Counter = collections.Counter()
    for c in runtime:
        rt[c["name"]] += c["dur"] / 1e3
        rt_n[c["name"]] += 1
    wall = (kernels[-1]["ts"] + kernels[-1]["dur"] - kernels[0]["ts"]) / 1e3 if kernels else 0.0
    busy = union_us([(k["ts"], k["ts"] + k["dur"]) for k in kernels]) / 1e3
    return {
        "window_ms": wall, "device_kernel_union_ms": busy,
        "per_step_kind": per_kind,
        "phase_host_ms": dict(phase_host.most_common()),
        "host_bound_gap_ms_by_phase": {k: v / 1e3 for k, v in gaps_by_phase.most_common()},
        "host_bound_gap_ms_by_op": {k: v / 1e3 for k, v in gaps_by_op.most_common(top)},
        "other_gap_ms": {k: v / 1e3 for k, v in device_wait.items()},
        "runtime_calls_ms": {k: {"ms": v, "n": rt_n[k]} for k, v in rt.most_common(top)},
    }


def format_summary(s: dict) -> str:
    lines = [f"trace window {s.get('window_ms', 0):.1f} ms, kernels running {s.get('device_kernel_union_ms', 0):.1f} ms"]
    for kind, r in s.get("per_step_kind", {}).items():
        n = max(r["steps"], 1)
        lines.append(f"  {kind:8s} x{r['steps']}: host launch {r['host_launch_ms'] / n:.2f} ms, device span "
                     f"{r['device_span_ms'] / n:.2f} ms, kernels {r['device_kernel_ms'] / n:.2f} ms a step "
                     f"({r['kernels'] / n:.0f} kernels)")
    lines.append("  host ms by phase: " + ", ".join(f"{k} {v:.1f}" for k, v in s.get("phase_host_ms", {}).items()))
    lines.append("  host-bound device gaps (ms) by step/phase: "
                 + ", ".join(f"{k} {v:.1f}" for k, v in s.get("host_bound_gap_ms_by_phase", {}).items()))
    for k, v in s.get("host_bound_gap_ms_by_op", {}).items():
        lines.append(f"    {v:8.2f} ms  {k}")
    lines.append("  other gaps: " + ", ".join(f"{k} {v:.1f} ms" for k, v in s.get("other_gap_ms", {}).items()))
    lines.append("  runtime calls: " + ", ".join(f"{k} {v['ms']:.1f} ms/{v['n']}"
                                                 for k, v in list(s.get("runtime_calls_ms", {}).items())[:8]))
    return "\n".join(lines)


if __name__ == "__main__":  # python -m docpipe.bench.step_trace TRACE.json.gz
    import sys
    print(format_summary(summarize(load_trace(sys.argv[1]))))
