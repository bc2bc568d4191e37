"""Device time of a callable, measured with CUDA events.

Shared by the op backends that pick a kernel by timing candidates at run time
(inference/ops/cuda/vision_attention.py) and by the microbenchmarks under
inference/bench, so both measure the same way. CUDA only; the caller warms up
(first calls compile or plan) and handles failures.
"""
from __future__ import annotations

import torch


def event_ms(fn, calls: int) -> float:
    """Mean milliseconds per call over `calls` back-to-back calls of `fn` on the
    current stream: queued without host syncs in between, so the Python launch
    path hides behind the queue; one sync at the end."""
    start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
    start.record()
    for _ in range(calls):
        fn()
    end.record()
    end.synchronize()
    return start.elapsed_time(end) / calls
