"""The prefill worker's sender thread runs its transfer work on a CUDA stream
of its own (not the engine's), and on nothing special off CUDA."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch

from inference.disagg import kv_senders


class FakeStream:
    def __init__(self, device=None):
        self.device = device


def test_cuda_pool_gets_a_fresh_stream_of_its_device(monkeypatch):
    made, entered = [], []
    monkeypatch.setattr(torch.cuda, "Stream", lambda device=None: made.append(FakeStream(device)) or made[-1])

    @contextlib.contextmanager
    def fake_stream_ctx(stream):
        entered.append(stream)
        yield

    monkeypatch.setattr(torch.cuda, "stream", fake_stream_ctx)
    pool = SimpleNamespace(device=torch.device("cuda:1"))
    with kv_senders.send_stream(pool):
        assert entered == made and made[0].device == torch.device("cuda:1")
    with kv_senders.send_stream(pool):
        pass
    assert len(made) == 2 and made[0] is not made[1]  # one stream per sender thread, never shared


def test_cpu_pool_changes_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no CUDA stream on CPU")))
    with kv_senders.send_stream(torch.zeros(2)):
        pass
