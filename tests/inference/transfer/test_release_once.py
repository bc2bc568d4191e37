"""A failed send is released once. The sender never calls on_release for a send that raises (or an
exception in send_many's results); its caller ends that meta: the prefill worker's KvSenders, whose
_on_release then runs once with the error. A send whose own write fails after another path (a lost
stream) finished and released it hands back that handle, not the error, so the caller does not end
it again."""
from __future__ import annotations

import types

import pytest
import torch

from inference.disagg.kv_senders import KvSenders
from inference.transfer import PoolSpec, TransferConfig, TransferMeta, memcopy, select_transport

from transfer_peers import TOKEN, random_pool

SPEC = PoolSpec(16, 2, 16, 2, 32, "float32")


class Worker(KvSenders):
    """The prefill worker's side of KvSenders: counts every release it is told of."""

    def __init__(self, sender_cls, config: TransferConfig):
        self.engine = types.SimpleNamespace(kv_pool=random_pool(SPEC))
        self.transport = types.SimpleNamespace(sender_cls=sender_cls)
        self.transfer_config, self.index, self.senders, self._send_failures = config, 0, {}, {}
        self.released: list[tuple[str, str]] = []

    def _send_started(self, metas, sender) -> None:
        pass

    def _on_release(self, meta: TransferMeta, status: str) -> None:
        self.released.append((meta.request_id, status))

    def close(self) -> None:
        for sender in self.senders.values():
            sender.close()  # fails (and releases) whatever is still pending


def _receiver(name: str):
    config = TransferConfig(transport=name, token=TOKEN)
    t = select_transport(name, config)
    rx = t.receiver_cls(t.receiver_cls.allocate_pool(SPEC), config)
    return t, config, rx, rx.start()


def test_a_send_whose_move_fails_is_released_once():
    t, config, rx, address = _receiver("tcp")

    class BrokenMove(t.sender_cls):
        def _move(self, seq, prep):
            raise BrokenPipeError("peer reset mid-frame")

    worker = Worker(BrokenMove, config)
    try:
        worker._send_group(address, [TransferMeta("f0", [1], [2], 16, 0, 0)])
    finally:
        worker.close()
        rx.close()
    assert len(worker.released) == 1, worker.released
    assert worker.released[0][0] == "f0" and worker.released[0][1].startswith("failed: BrokenPipeError: peer reset")


def test_a_self_acked_group_whose_copy_fails_is_released_once_each(monkeypatch):
    t, config, rx, address = _receiver("shm")
    real, calls = memcopy.copy_runs, []

    def second_fails(dst, src, runs):
        calls.append(1)
        if len(calls) == 2:
            raise OSError("copy failed")
        real(dst, src, runs)
    monkeypatch.setattr(memcopy, "copy_runs", second_fails)
    monkeypatch.setattr("inference.transfer.sender_groups.CHUNK_ITEMS", 2)
    worker = Worker(t.sender_cls, config)
    try:
        worker._send_group(address, [TransferMeta(f"g{i}", [i], [i + 8], 16, 0, 0) for i in range(4)])
    finally:
        worker.close()
        rx.close()
    assert sorted(r for r, _ in worker.released) == ["g0", "g1", "g2", "g3"]  # each once
    status = dict(worker.released)
    assert status["g0"] == status["g1"] == "acked"
    assert status["g2"].startswith("failed: OSError: copy failed") and status["g3"] == status["g2"]


def test_a_send_failed_after_its_stream_released_it_returns_that_handle():
    """The stream is lost while the move runs (its reader fails the pending transfer and releases
    it), then the move raises: send() hands back the released handle, and nothing releases again."""
    t, config, rx, address = _receiver("tcp")
    released = []

    class LostMidMove(t.sender_cls):
        def _move(self, seq, prep):
            self._finish((seq,), "failed", "connection lost")  # what the reader's _lose_stream does
            raise BrokenPipeError("peer reset")

    tx = LostMidMove(random_pool(SPEC), config, lambda meta, status: released.append((meta.request_id, status)))
    tx.connect(address)
    try:
        handle = tx.send(TransferMeta("r0", [1], [2], 16, 0, 0))
        assert handle.wait(0) == "failed" and handle.error == "connection lost" and tx._pending == {}
    finally:
        tx.close()
        rx.close()
    assert released == [("r0", "failed")]


@pytest.mark.parametrize("where", ["move", "meta"])
def test_a_raising_send_never_calls_on_release(where):
    t, config, rx, address = _receiver("tcp")
    released = []

    class Broken(t.sender_cls):
        def _move(self, seq, prep):
            if where == "move":
                raise OSError("move failed")
            return super()._move(seq, prep)

        def _send_meta(self, header):
            raise OSError("META write failed")

    tx = Broken(random_pool(SPEC), config, lambda meta, status: released.append((meta.request_id, status)))
    tx.connect(address)
    try:
        with pytest.raises(OSError, match="failed"):
            tx.send(TransferMeta("r0", [1], [2], 16, 0, 0))
        assert tx._pending == {}
    finally:
        tx.close()
        rx.close()
    assert released == [] and torch.count_nonzero(rx.pool[2]) == 0  # nothing landed
