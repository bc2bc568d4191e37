"""Host timing for the benchmarks: `Clock` adds up wall seconds per category
around wrapped callables, with a device sync on both sides so that queued
device work is counted where it was issued; `ceilings` measures the device's
copy bandwidth and bf16 matmul rate in the same run (GPU only)."""
from __future__ import annotations

import time


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


def ceilings(device: str) -> dict:
    """The device's copy bandwidth and bf16 matmul rate, measured in this run (GPU only)."""
    import torch
    if not device.startswith("cuda"):
        return {}
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    dst, mat = torch.empty_like(src), torch.randn(8192, 8192, dtype=torch.bfloat16, device=device)
    out = {}
    for label, fn, work in (("copy_GB_per_s", lambda: dst.copy_(src), 2 * src.numel() / 1e9),
                            ("bf16_matmul_TFLOP_per_s", lambda: mat @ mat, 2 * 8192 ** 3 / 1e12)):
        fn()
        _sync()
        t0 = time.perf_counter()
        for _ in range(10):
            fn()
        _sync()
        out[label] = work * 10 / (time.perf_counter() - t0)
    return out
