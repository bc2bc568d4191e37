"""Cyclic-GC pauses in engine processes.

A full collection of Python's cyclic collector walks every tracked object and
holds the GIL, so every thread of the process, throughout. Once an engine has
started, most of those objects are the model's modules and what the imported
libraries keep (~360k for MinerU2.5): a full collection took 170-205 ms on the
dev host. In a PD prefill worker one held a page's KV transfers for ~205 ms
(session 8: transfer p99 208.7 ms in one run, ~16-44 ms in the others), which
is 25 ms of TPOT for a 9-token title.

freeze_startup_objects() moves what is alive now into the collector's
permanent generation (gc.freeze), which collections skip. For processes that
serve one engine for their life (PD role processes) it is called once the
worker is built; around a shorter engine life, frozen() undoes it at the end
so the engine's own cycles can be collected after it. DOCPIPE_GC_FREEZE=0
turns both off (A/B runs).

GcPauses records the collector's pauses (gc.callbacks) for benchmarks. The in-process engine (`LLM`)
freezes nothing: a 64-page layout pass saw no full collection and < 1 ms of pauses (session 13, c3),
and freezing around each generate() call left young garbage uncollected across calls.
"""
from __future__ import annotations

import contextlib
import gc
import time

from inference.env import env_flag

GC_FREEZE_ENV = "DOCPIPE_GC_FREEZE"


def freeze_startup_objects() -> bool:
    """Collect once (what start-up left as garbage goes now, not into the frozen set), then freeze
    every object alive. Returns whether it froze."""
    if not env_flag(GC_FREEZE_ENV, default=True):
        return False
    gc.collect()
    gc.freeze()
    return True


@contextlib.contextmanager
def frozen():
    """freeze_startup_objects() for the block; the frozen objects go back to the collector after it."""
    did = freeze_startup_objects()
    try:
        yield
    finally:
        if did:
            gc.unfreeze()


class GcPauses:
    """The cyclic collector's pauses while installed (a context manager): count and milliseconds by
    generation, measured from gc.callbacks' start to stop."""

    def __init__(self):
        self.ms = [0.0, 0.0, 0.0]
        self.count = [0, 0, 0]
        self._started = 0.0

    def _callback(self, phase: str, info: dict) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        generation = info["generation"]
        self.ms[generation] += (time.perf_counter() - self._started) * 1e3
        self.count[generation] += 1

    def __enter__(self) -> "GcPauses":
        gc.callbacks.append(self._callback)
        return self

    def __exit__(self, *exc) -> None:
        gc.callbacks.remove(self._callback)

    def report(self) -> dict:
        return dict(total_ms=round(sum(self.ms), 3), ms_by_generation=[round(x, 3) for x in self.ms],
                    count_by_generation=list(self.count))
