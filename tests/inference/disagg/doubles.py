"""Test doubles shared by the disaggregation worker tests: a control channel
that records what a worker sent, and real workers (dummy:tiny engine, no
serve loop) on the local-cpu-1p1d layout with a transport of the test's own."""
from __future__ import annotations

import queue

from inference.disagg import protocol as P
from inference.layouts import load_layout


class Recorder:
    """A control channel double: what the worker sent, as a queue."""

    closed = False

    def __init__(self):
        self.sent: queue.Queue = queue.Queue()

    def send(self, msg):
        self.sent.put(msg)

    def reply_error(self, error, request_id=""):
        self.sent.put(P.Error(error=error, request_id=request_id))


def make_worker(cls, token: str, transport=None, fake_transfer: bool = False):
    """A real `cls` (PrefillWorker / DecodeWorker) of dummy:tiny with a small pool; `transport`
    replaces the worker's transfer transport after construction; `fake_transfer` selects the
    in-process fake transport in the layout (decode workers build their receiver from it)."""
    layout = load_layout("local-cpu-1p1d")
    layout.token = token
    if fake_transfer:
        layout.transfer.transport, layout.transfer.fallback = "fake", None
    w = cls("dummy:tiny", layout, 0, num_kv_blocks=16, max_model_len=128)
    if transport is not None:
        w.transport = transport
    return w


def decode_until_done(worker, channel, steps: int = 20):
    """Step a decode worker's engine until nothing is left (at most `steps`); the first reply sent."""
    for _ in range(steps):
        if not worker.engine.has_unfinished_requests():
            break
        worker.run_step()
    return channel.sent.get(timeout=10)
