"""Device kernels of a timed run: DOCPIPE_PROFILE_KERNELS=1 makes `docpipe
bench pipeline` run its timed passes under torch.profiler (CUDA activity
only) and report the total kernel time, the top kernels by device time, and
the kernel time per 100 ms of wall (how busy the device really was, as
opposed to the step events' span, which also counts gaps inside a step).
Diagnostic only: the profiler costs host time, so pages/s of such a run is
not a figure to quote.
"""
from __future__ import annotations

import contextlib
import os

ENV = "DOCPIPE_PROFILE_KERNELS"


def requested() -> bool:
    return os.environ.get(ENV, "").strip().lower() not in ("", "0", "false", "no")


class KernelTable:
    def __init__(self):
        self.prof = None

    def report(self, wall_s: float, top: int = 30) -> dict:
        rows = []
        for evt in self.prof.key_averages():
            dev_us = getattr(evt, "self_device_time_total", None) or getattr(evt, "self_cuda_time_total", 0)
            if dev_us > 0:
                rows.append((evt.key, dev_us, evt.count))
        rows.sort(key=lambda r: -r[1])
        total_ms = sum(r[1] for r in rows) / 1000
        return {"device_kernel_ms": total_ms, "kernel_share_of_wall": total_ms / 1000 / max(wall_s, 1e-9),
                "top": [{"kernel": k[:100], "ms": us / 1000, "count": c} for k, us, c in rows[:top]]}


@contextlib.contextmanager
def kernel_profile(enabled: bool):
    """Yields a KernelTable filled when the block ends (None when not enabled or no CUDA)."""
    import torch

    if not enabled or not torch.cuda.is_available():
        yield None
        return
    from torch.profiler import ProfilerActivity, profile

    table = KernelTable()
    with profile(activities=[ProfilerActivity.CUDA]) as prof:
        yield table
        torch.cuda.synchronize()
    table.prof = prof
