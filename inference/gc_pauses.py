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
"""
from __future__ import annotations

import contextlib
import gc

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
