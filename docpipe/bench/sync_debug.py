"""Where the host waits for the GPU: torch's sync debug mode over a timed run.

DOCPIPE_SYNC_DEBUG=1 makes `docpipe bench pipeline` run its timed passes with
torch.cuda.set_sync_debug_mode("warn"): every operation that synchronises
with the device (item(), tolist() of a device tensor, a blocking copy,
nonzero, ...) raises a warning, which is caught here with the stack it came
from. The report counts them per call site (the innermost frame in docpipe
or inference code, plus the frame that called it), most frequent first.
Page-locked allocations and other driver-level waits are not seen by it.
Diagnostic only: the warnings themselves cost host time.
"""
from __future__ import annotations

import collections
import contextlib
import traceback
import warnings

from inference.env import env_flag

ENV = "DOCPIPE_SYNC_DEBUG"
_OURS = ("/docpipe/", "/inference/")


def requested() -> bool:
    return env_flag(ENV)


class SyncSites:
    def __init__(self, show_other=None):
        self.counts: collections.Counter = collections.Counter()
        self.show_other = show_other  # where warnings other than sync ones still go

    def _record(self, message, category, filename, lineno, file=None, line=None) -> None:
        if "synchroniz" not in str(message):
            if self.show_other is not None:
                self.show_other(message, category, filename, lineno, file, line)
            return
        ours = [f for f in traceback.extract_stack()[:-1] if any(part in f.filename for part in _OURS)
                and not f.filename.endswith("sync_debug.py")]
        site = " <- ".join(f"{_short(f.filename)}:{f.lineno} {f.name}" for f in reversed(ours[-2:]))
        self.counts[site or f"{filename}:{lineno}"] += 1

    def report(self, top: int = 25) -> list[dict]:
        return [{"site": site, "count": n} for site, n in self.counts.most_common(top)]


def _short(path: str) -> str:
    for part in _OURS:
        if part in path:
            return part.strip("/") + "/" + path.split(part, 1)[1]
    return path


@contextlib.contextmanager
def sync_sites(enabled: bool):
    """Yields a SyncSites that collects for the duration (None when not enabled or no CUDA)."""
    import torch

    if not enabled or not torch.cuda.is_available():
        yield None
        return
    sites = SyncSites(warnings.showwarning)
    previous = torch.cuda.get_sync_debug_mode()
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = sites._record
        torch.cuda.set_sync_debug_mode("warn")
        try:
            yield sites
        finally:
            torch.cuda.set_sync_debug_mode(previous)
