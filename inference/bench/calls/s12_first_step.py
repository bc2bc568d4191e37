"""Session 12 probe: what the host does before the layout pass's first step (115 ms in call 1).
argv[2] (optional): "threads" - passes with the prep thread's host() calls stamped too, at the default
GIL switch interval and at 0.5 ms, and the threads alive (call 4).

One LLM (dummy:mineru2.5, bf16, the layout_ab setting); a warm pass of 64 pages; then a pass of 64 pages
with time stamps on the calls that run before the first launch (PrepAhead.get, its wait for the prep
thread, Processor.finish, engine.add_request, scheduler.schedule, runner.launch); then one more pass
under cProfile (main thread), top functions by cumulative time. Writes argv[1] (JSON).
"""
import cProfile
import io
import json
import pstats
import sys
import time

import torch

from inference import LLM
from inference.bench.engine_bench import forced, request
from inference.models.loader import load_config
from inference.prep_ahead import PrepAhead

llm = LLM(model="dummy:mineru2.5", dtype="bfloat16", device="cuda", gpu_memory_utilization=0.5)
cfg = load_config("dummy:mineru2.5")
pages = [request(cfg, 1036, 1036, seed=1000 + i) for i in range(64)]
llm.generate(pages, forced(1))
torch.cuda.synchronize()

marks: list[tuple[str, float, float]] = []  # name, start, end (host s)


def timed(obj, name, label):
    fn = getattr(obj, name)

    def wrapper(*a, **k):
        t = time.perf_counter()
        try:
            return fn(*a, **k)
        finally:
            marks.append((label, t, time.perf_counter()))
    setattr(obj, name, wrapper)


eng = llm.engine
timed(PrepAhead, "get", "prep.get")
timed(PrepAhead, "_collect", "prep._collect")
timed(eng.processor, "finish", "processor.finish")
timed(eng, "add_request", "engine.add_request")
timed(eng.scheduler, "schedule", "scheduler.schedule")
timed(eng.runner, "launch", "runner.launch")
torch.cuda.synchronize()
t0 = time.perf_counter()
llm.generate(pages, forced(1))
torch.cuda.synchronize()
wall = time.perf_counter() - t0
first_launch = next(t for name, t, _ in marks if name == "runner.launch")
if sys.argv[2:] == ["threads"]:
    import inference.models.image_patches as patches
    from inference import h2d

    timed(patches, "to_device", "patchify.to_device")
    timed(h2d.PinnedUploader, "upload", "uploader.upload")
    timed(h2d.RingRegions, "reserve", "ring.reserve") if hasattr(h2d.RingRegions, "reserve") else None
    print("threads:", [(t.name, t.daemon) for t in __import__("threading").enumerate()])
    for interval in (sys.getswitchinterval(), 0.0005):
        sys.setswitchinterval(interval)
        marks.clear()
        torch.cuda.synchronize()
        before_stats = torch.cuda.memory_stats()
        t1 = time.perf_counter()
        llm.generate(pages, forced(1))
        torch.cuda.synchronize()
        w = time.perf_counter() - t1
        after_stats = torch.cuda.memory_stats()
        print("allocator during the pass:", {k: after_stats.get(k, 0) - before_stats.get(k, 0) for k in
                                             ("num_device_alloc", "num_device_free", "num_alloc_retries",
                                              "num_sync_all_streams")})
        launch = next(t for name, t, _ in marks if name == "runner.launch")
        rows = [(n, round((t - t1) * 1e3, 2), round((e - t) * 1e3, 2)) for n, t, e in marks if t < launch]
        print(f"switch interval {interval * 1e3:.1f} ms: wall {w * 1e3:.1f}, first launch {(launch - t1) * 1e3:.1f} ms")
        for r in rows:
            print("   ", r)
    sys.setswitchinterval(0.005)
before = {}
for name, t, e in marks:
    if t < first_launch:
        c, s = before.get(name, (0, 0.0))
        before[name] = (c + 1, s + (e - t) * 1e3)
print(f"wall {wall * 1e3:.1f} ms; first launch at {(first_launch - t0) * 1e3:.1f} ms; before it (calls, ms):")
for name, (c, s) in before.items():
    print(f"  {name:24s} {c:4d} {s:8.2f}")
timeline = [(n, round((t - t0) * 1e3, 2), round((e - t) * 1e3, 2)) for n, t, e in marks if t < first_launch + 0.2]
prof = cProfile.Profile()
torch.cuda.synchronize()
prof.enable()
llm.generate(pages[:12], forced(1))
prof.disable()
torch.cuda.synchronize()
buf = io.StringIO()
pstats.Stats(prof, stream=buf).sort_stats("cumulative").print_stats(45)
print(buf.getvalue()[-9000:])
json.dump({"wall_ms": wall * 1e3, "first_launch_ms": (first_launch - t0) * 1e3, "before": before,
           "timeline": timeline, "cprofile_12_pages": buf.getvalue()}, open(sys.argv[1], "w"), indent=1)
