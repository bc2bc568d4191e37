"""Host timing for the benchmarks: `Clock` adds up wall seconds per category
around wrapped callables, with a device sync on both sides so that queued
device work is counted where it was issued."""
from __future__ import annotations

import time


def step_kind(sched) -> str:
    """"decode" for an engine step of one new token per sequence, else "prefill"."""
    return "decode" if all(s.num_new_tokens == 1 for s in sched.scheduled) else "prefill"


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
