"""The prefill worker's sender thread runs its transfer work on a CUDA stream
of its own (not the engine's), and on nothing special off CUDA."""
from __future__ import annotations

import contextlib
from types import SimpleNamespace

import torch

from inference.disagg import kv_senders


class FakeStream:
    def __init__(self, device=None, priority=0):
        self.device, self.priority = device, priority


def test_cuda_pool_sends_on_its_devices_one_send_stream(monkeypatch):
    from inference import streams
    made, entered = [], []
    monkeypatch.setattr(streams, "_STREAMS", {})
    monkeypatch.setattr(torch.cuda, "Stream",
                        lambda device=None, priority=0: made.append(FakeStream(device, priority)) or made[-1])

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
    # made once: torch hands out pool streams in rotation, so a stream made per sender would come
    # back as another purpose's stream (a graph capture's, the uploads') -- inference/streams.py
    assert len(made) == 1 and entered == [made[0], made[0]]
    assert streams.side_stream("cuda:1", "graph-capture") is not made[0] and len(made) == 2
    # the KV streams run ahead of queued prefill kernels; other purposes at normal priority
    assert made[0].priority < 0 and made[1].priority == 0


def test_cpu_pool_changes_nothing(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Stream", lambda *a, **k: (_ for _ in ()).throw(AssertionError("no CUDA stream on CPU")))
    with kv_senders.send_stream(torch.zeros(2)):
        pass
