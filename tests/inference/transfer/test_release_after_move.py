"""A transfer is released only once the sending thread has left its move (base.py, sender_acks.py).

A lease that runs out, a receiver that goes away or close() on another thread while the move still
reads the source blocks: the handle's status is final at once (waiters see it), but on_release, which
hands the blocks back for reuse, waits until the move returned (then `_quiesce()`, then the release),
and it comes exactly once. Real threads and sockets, CPU pools: tcp for lone sends, an in-process
grouped sender (cuda-ipc's copy plan on CPU tensors) for send_many's chunks.
"""
from __future__ import annotations

import threading
import time

import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport
from inference.transfer import sender_groups

from local_peers import LocalReceiver, LocalSender
from transfer_peers import TOKEN, random_pool

SPEC = PoolSpec(16, 2, 16, 2, 32, "float32")
QUIET_S = 0.3  # how long a release that must not come yet is waited for


class Held:
    """Mixin: each move runs for real, then holds until `go` is set (the slow tail of a copy still
    reading the source), the first one only when `hold_once`. Records moves, quiesces and releases
    in order in `events`."""

    hold_once = False
    raise_after = False  # the held move then raises (the connection went while it ran)

    def _setup_hold(self) -> None:
        self.go, self.entered = threading.Event(), threading.Event()
        self.events, self.handles, self.released = [], {}, threading.Event()
        self._held = False

    def _move(self, seq, prep):
        extra = super()._move(seq, prep)
        self._hold([seq])
        return extra

    def _move_many(self, items):
        extra = super()._move_many(items)
        self._hold([seq for seq, _ in items])
        return extra

    def _hold(self, seqs) -> None:
        self.handles.update({seq: self._pending[seq] for seq in seqs if seq in self._pending})
        if not (self.hold_once and self._held):
            self._held = True
            self.entered.set()
            assert self.go.wait(10), "the test never let the move go on"
        self.events.append(("moved", tuple(seqs)))
        if self.raise_after:
            raise OSError("connection reset mid-move")

    def _quiesce(self) -> None:
        self.events.append(("quiesce",))
        super()._quiesce()


def _on_release(box: list):
    def on_release(meta, status):
        tx = box[0]
        tx.events.append(("release", meta.request_id, status))
        tx.released.set()
    return on_release


def _run_out(handles) -> None:
    """Their leases end now: the ack reader's next check (every LEASE_CHECK_S) expires them."""
    for handle in handles:
        handle.meta.lease_expiry_unix_s = time.time() - 1


def _tcp_pair(raise_after: bool = False):
    t = select_transport("tcp", TransferConfig(transport="tcp", token=TOKEN))

    class HeldTcp(Held, t.sender_cls):
        pass

    rx = t.receiver_cls(t.receiver_cls.allocate_pool(SPEC), TransferConfig(transport="tcp", token=TOKEN))
    box: list = []
    tx = HeldTcp(random_pool(SPEC), TransferConfig(transport="tcp", token=TOKEN), _on_release(box))
    tx.raise_after = raise_after
    box.append(tx)
    tx._setup_hold()
    tx.connect(rx.start())
    return rx, tx


def _in_thread(fn, *args) -> tuple[threading.Thread, list]:
    result: list = []
    thread = threading.Thread(target=lambda: result.append(fn(*args)), daemon=True)
    thread.start()
    return thread, result


def _releases(tx) -> list:
    return [e[1:] for e in tx.events if e[0] == "release"]


@pytest.mark.parametrize("cause, raise_after", [("lease", False), ("receiver_gone", False), ("close", False),
                                                ("close", True)])
def test_a_transfer_ended_mid_move_is_released_once_after_the_move(cause, raise_after):
    """Then the move returns (its META write fails on a connection gone, but for a lease) or
    raises: either way send() hands back the ended handle, released once after the move."""
    rx, tx = _tcp_pair(raise_after)
    try:
        thread, result = _in_thread(tx.send, TransferMeta("r0", [1, 2], [3, 4], 32, 0, 0))
        assert tx.entered.wait(5)
        (handle,) = tx.handles.values()
        if cause == "lease":
            _run_out([handle])
        elif cause == "receiver_gone":
            rx.close()  # its connections shut: the ack reader loses the stream
        elif cause == "close":
            tx.close()  # fails what is pending, from this thread, while the move holds
        want = "lease_expired" if cause == "lease" else "failed"
        assert handle.wait(5) == want  # final (waiters see it) while the move still runs
        assert not tx.released.wait(QUIET_S), f"released mid-move: {tx.events}"
        tx.go.set()
        thread.join(5)
        assert not thread.is_alive() and result == [handle]  # the send hands back the ended handle, never raises
    finally:
        tx.go.set()
        tx.close()
        rx.close()
    assert _releases(tx) == [("r0", want)]  # once, with the status the handle shows
    assert tx.events[-3:] == [("moved", (1,)), ("quiesce",), ("release", "r0", want)]


class HeldGroups(Held, LocalSender):
    hold_once = True  # only the first chunk holds: the later ones were waiting behind it


def test_a_group_whose_leases_end_mid_move_releases_each_after_its_chunk(monkeypatch):
    """Chunks of 2: the first chunk's move holds while every lease runs out, the second chunk (its
    transfers reserved, not yet moved) waits behind it. Each transfer is released once, as
    lease_expired, only after its own chunk's move returned."""
    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 2)
    config = TransferConfig(transport="local-group", token=TOKEN)
    rx = LocalReceiver(torch.zeros(SPEC.shape), TransferConfig(transport="local-group", token=TOKEN))
    box: list = []
    tx = HeldGroups(random_pool(SPEC), config, _on_release(box))
    box.append(tx)
    tx._setup_hold()
    tx.connect(rx.start())
    try:
        metas = [TransferMeta(f"r{i}", [i], [i + 8], 16, 0, 0) for i in range(3)]
        thread, result = _in_thread(tx.send_many, metas)
        assert tx.entered.wait(5)
        with tx._room:
            later = dict(tx._pending)  # the first chunk's two and the one not moved yet
        assert len(later) == 3
        _run_out(later.values())
        assert [h.wait(5) for h in later.values()] == ["lease_expired"] * 3
        assert not tx.released.wait(QUIET_S), f"released mid-move: {tx.events}"
        tx.go.set()
        thread.join(5)
        assert not thread.is_alive() and result == [[later[s] for s in sorted(later)]]
    finally:
        tx.go.set()
        tx.close()
        rx.close()
    assert sorted(_releases(tx)) == [(f"r{i}", "lease_expired") for i in range(3)]  # each once
    moved = {seq: k for k, e in enumerate(tx.events) if e[0] == "moved" for seq in e[1]}
    released = {e[1]: k for k, e in enumerate(tx.events) if e[0] == "release"}
    for seq, handle in later.items():
        assert released[handle.meta.request_id] > moved[seq], tx.events
    assert tx.events.count(("quiesce",)) == 2  # once per chunk left with deferred releases


def test_an_ack_during_the_move_is_released_at_once():
    """An ACK means the receiver has every byte: it is released where it arrives (no quiesce), even
    while the sending thread is still in its move or META write, and not again when it leaves."""
    rx, tx = _tcp_pair()
    try:
        thread, result = _in_thread(tx.send, TransferMeta("r0", [1, 2], [3, 4], 32, 0, 0))
        assert tx.entered.wait(5)
        ((seq, handle),) = tx.handles.items()
        tx._finish([seq], "acked")  # as the ack reader would, on an answer that came early
        assert handle.wait(0) == "acked" and tx.released.wait(5)
        assert tx.events == [("release", "r0", "acked")]  # before the move went on, no quiesce
        tx.go.set()
        thread.join(5)
        assert not thread.is_alive() and result == [handle]
    finally:
        tx.go.set()
        tx.close()
        rx.close()
    assert _releases(tx) == [("r0", "acked")]  # once


def test_a_transport_close_can_wait_for_the_running_move():
    """RDMA closes its queue pair after the base close: _wait_moves_left holds it until the sending
    thread left its move (here the held tcp move), and answers False while one still runs."""
    rx, tx = _tcp_pair()
    try:
        thread, result = _in_thread(tx.send, TransferMeta("r0", [1, 2], [3, 4], 32, 0, 0))
        assert tx.entered.wait(5)
        tx.close()
        assert tx._wait_moves_left(QUIET_S) is False  # the move still holds
        waiter, drained = _in_thread(lambda: (tx._wait_moves_left(30), tx.events.append(("drained",)))[0])
        assert not tx.released.wait(QUIET_S) and drained == []
        tx.go.set()
        waiter.join(5)
        thread.join(5)
        assert drained == [True] and not thread.is_alive()
    finally:
        tx.go.set()
        tx.close()
        rx.close()
    assert tx.events.index(("moved", (1,))) < tx.events.index(("drained",))
