"""Device kernels of a timed run: DOCPIPE_PROFILE_KERNELS=1 makes `docpipe
bench pipeline` run its timed passes (and `docpipe bench engine` its second
layout-prefill pass) under torch.profiler (CUDA activity only) and report the total kernel time, the top kernels by device time, and
the share of the wall in which a kernel ran (how busy the device really was,
as opposed to the step events' span, which also counts gaps inside a step;
kernels of overlapping streams count once).
Diagnostic only: the profiler costs host time, so pages/s of such a run is
not a figure to quote.
"""
from __future__ import annotations

import contextlib

from inference.env import env_flag

ENV = "DOCPIPE_PROFILE_KERNELS"


def requested() -> bool:
    return env_flag(ENV)


class KernelTable:
    def __init__(self):
        self.prof = None  # the finished torch.profiler.profile

    def report(self, wall_s: float, top: int = 30) -> dict:
        """device_kernel_ms: summed kernel time (copies and memsets apart, in
        device_copy_ms); kernel_share_of_wall: the share of wall_s in which at
        least one kernel ran (overlapping streams are counted once); top: the
        device activities with most summed time. Only device-side events are
        read: host events carry their launched kernels' time too."""
        from torch.autograd import DeviceType

        per_name: dict[str, list] = {}
        spans = []
        copy_us = 0.0
        for evt in self.prof.events():
            if evt.device_type == DeviceType.CPU:
                continue
            start, end = evt.time_range.start, evt.time_range.end
            row = per_name.setdefault(evt.name, [0.0, 0])
            row[0] += end - start
            row[1] += 1
            if evt.name.startswith(("Memcpy", "Memset")):
                copy_us += end - start
            else:
                spans.append((start, end))
        rows = sorted(per_name.items(), key=lambda kv: -kv[1][0])
        return {"device_kernel_ms": sum(e - s for s, e in spans) / 1000, "device_copy_ms": copy_us / 1000,
                "kernel_share_of_wall": union_us(spans) / 1e6 / max(wall_s, 1e-9),
                "top": [{"kernel": k[:100], "ms": us / 1000, "count": c} for k, (us, c) in rows[:top]]}


def top_lines(report: dict, rows: int, indent: str = "  ") -> list[str]:
    """The `rows` kernels with most device time of a report(), one printable line each."""
    return [f"{indent}{row['ms']:9.1f} ms x{row['count']:<6} {row['kernel']}" for row in report["top"][:rows]]


def union_us(spans: list[tuple[float, float]]) -> float:
    """Length of the union of [start, end) intervals."""
    total, reach = 0.0, float("-inf")
    for start, end in sorted(spans):
        if end > reach:
            total += end - max(start, reach)
            reach = end
    return total


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
