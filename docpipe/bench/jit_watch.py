"""Triton kernels built (or loaded from the disk cache) during a timed run.

A Triton kernel is compiled per specialisation: its constexpr values and the
alignment/equals-1 class of its integer and pointer arguments. A shape that
the warm-up pass did not meet makes the first call of a timed run compile
(hundreds of milliseconds on the step thread) or, with a warm disk cache,
load the binary (milliseconds). Either lands in the run's wall time.

`jit_watch()` installs Triton's runtime hooks for the duration: the cache
hook fires on every in-process cache miss, before the build; the post-
compile hook after it, so the pair times each miss. The report lists the
misses by kernel (count, seconds, the specialisation of the first one).
Costs nothing on cache hits (the hooks are not called), so bench pipeline
keeps it on. Without Triton or with a Triton lacking `knobs` (< 3.4), it
yields None.
"""
from __future__ import annotations

import collections
import contextlib
import time


class JitMisses:
    def __init__(self):
        self.started: dict = {}  # specialisation key -> perf_counter at the miss
        self.count: collections.Counter = collections.Counter()  # kernel name -> misses
        self.seconds: collections.Counter = collections.Counter()  # kernel name -> seconds building/loading
        self.example: dict[str, str] = {}  # kernel name -> repr of its first missed specialisation

    def on_miss(self, *, key, repr, fn, **_) -> bool:
        name = getattr(fn, "name", str(fn))
        self.count[name] += 1
        self.example.setdefault(name, repr)
        self.started[str(key)] = (name, time.perf_counter())
        return False  # never skip the build

    def on_built(self, *, key, **_) -> None:
        entry = self.started.pop(str(key), None)
        if entry is not None:
            name, t0 = entry
            self.seconds[name] += time.perf_counter() - t0

    def report(self) -> dict:
        return {"misses": sum(self.count.values()), "seconds": sum(self.seconds.values()),
                "kernels": [{"kernel": k, "misses": n, "seconds": self.seconds[k], "first": self.example[k]}
                            for k, n in self.count.most_common()]}


@contextlib.contextmanager
def jit_watch(enabled: bool = True):
    """Yields a JitMisses collecting for the duration (None when disabled or unavailable)."""
    try:
        from triton import knobs
        runtime = knobs.runtime
        before = (runtime.jit_cache_hook, runtime.jit_post_compile_hook)
    except (ImportError, AttributeError):
        runtime = None
    if not enabled or runtime is None:
        yield None
        return
    misses = JitMisses()
    runtime.jit_cache_hook, runtime.jit_post_compile_hook = misses.on_miss, misses.on_built
    try:
        yield misses
    finally:
        runtime.jit_cache_hook, runtime.jit_post_compile_hook = before
