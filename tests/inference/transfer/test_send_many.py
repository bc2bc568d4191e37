"""ControlSender.send_many for a transport that moves groups (batches_sends), over a real control
connection: groups never exceed the room max_inflight leaves, a meta that fails to prepare fails
alone, every other one lands and is acked, and the receiver gets them in order. The data path is
an in-process copy into the receiver's pool (cuda-ipc's plan on CPU tensors)."""
from __future__ import annotations

import contextlib
import json
import threading
import time
import types

import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferError, TransferMeta, wire
from inference.transfer import sender_groups
from inference.transfer.base import TransferHandle
from inference.transfer.meta import meta_header

from local_peers import POOLS, LocalReceiver, LocalSender

SPEC = PoolSpec(32, 2, 4, 2, 8, "float32")
TOKEN = "test-token-send-many"


@contextlib.contextmanager
def _connected(config: TransferConfig, src: torch.Tensor | None = None, on_release=None):
    """(receiver, LocalSender connected to it); both closed on leaving."""
    rx = LocalReceiver(torch.zeros(SPEC.shape), config)
    tx = LocalSender(torch.randn(SPEC.shape) if src is None else src, config, on_release)
    tx.connect(rx.start())
    try:
        yield rx, tx
    finally:
        tx.close()
        rx.close()


def test_send_many_moves_groups_within_max_inflight():
    config = TransferConfig(transport="local-group", token=TOKEN, max_inflight=3)
    src = torch.randn(SPEC.shape)
    released, done = {}, threading.Event()

    def on_release(meta, status):
        released[meta.request_id] = status
        if len(released) == 6:
            done.set()

    with _connected(config, src, on_release) as (rx, tx):
        metas = [TransferMeta(f"r{i}", [i], [i + 10], SPEC.block_size, 0, 0) for i in range(7)]
        metas[4] = TransferMeta("bad", [4], [SPEC.num_blocks + 1], SPEC.block_size, 0, 0)  # outside the receiver's pool
        out = tx.send_many(metas)
        assert [isinstance(h, TransferHandle) for h in out] == [True, True, True, True, False, True, True]
        assert isinstance(out[4], TransferError) and "outside" in str(out[4])
        assert [h.wait(10) for i, h in enumerate(out) if i != 4] == ["acked"] * 6
        assert done.wait(10) and set(released.values()) == {"acked"} and "bad" not in released
        got = [rx.recv(timeout_s=5) for _ in range(6)]
    assert [m.request_id for m in got] == ["r0", "r1", "r2", "r3", "r5", "r6"]
    assert sum(map(len, tx.groups)) == 6 and tx.groups[0] == [1, 2, 3]  # room for 3: the first group takes 3
    assert all(len(g) <= 3 for g in tx.groups)
    dst = POOLS[id(rx)]
    for i in (0, 1, 2, 3, 5, 6):
        assert torch.equal(dst[i + 10], src[i])
    assert torch.count_nonzero(dst[14]) == 0


def test_send_many_without_a_receiver_fails_every_meta():
    tx = LocalSender(torch.zeros(SPEC.shape), TransferConfig(transport="local-group", token=TOKEN))
    out = tx.send_many([TransferMeta(f"r{i}", [i], [i], SPEC.block_size, 0, 0) for i in range(2)])
    assert all(isinstance(e, TransferError) and "not connected" in str(e) for e in out)


def test_send_many_sends_shortest_prompt_first():
    """A group goes out fewest tokens first (equal lengths in the order given): a short request's
    META is not packed and landed behind long ones."""
    with _connected(TransferConfig(transport="local-group", token=TOKEN)) as (rx, tx):
        tokens = [4, 2, 4, 1, 3]
        out = tx.send_many([TransferMeta(f"r{i}", [i], [i], n, 0, 0) for i, n in enumerate(tokens)])
        assert [h.wait(10) for h in out] == ["acked"] * 5
        got = [rx.recv(timeout_s=5).request_id for _ in tokens]
    assert got == ["r3", "r1", "r4", "r0", "r2"]
    assert tx.groups == [[1, 2, 3, 4, 5]]  # one group, one move


def test_send_many_prepares_at_most_max_inflight_ahead_of_the_moves():
    """A conversion stages each prepared transfer's KV on the device: a group is prepared
    max_inflight at a time, not all at once."""
    with _connected(TransferConfig(transport="local-group", token=TOKEN, max_inflight=2)) as (rx, tx):
        log, prepare, move = [], tx._prepare, tx._move_many
        tx._prepare = lambda meta: log.append("prepare") or prepare(meta)
        tx._move_many = lambda items: log.append(len(items)) or move(items)
        out = tx.send_many([TransferMeta(f"r{i}", [i], [i], SPEC.block_size, 0, 0) for i in range(5)])
        assert [h.wait(10) for h in out] == ["acked"] * 5
    ahead = 0
    for entry in log:
        ahead = ahead + 1 if entry == "prepare" else ahead - entry
        assert ahead <= 2
    assert log.count("prepare") == 5 and sum(e for e in log if e != "prepare") == 5


def test_send_many_no_room_fails_the_rest_of_the_group_prepared_or_not():
    """No ACK comes back, so once max_inflight are unacked the next reserve times out (lease_s):
    the sent ones keep their handles, every other meta (the waiting round's and the rounds not yet
    prepared) gets that error; none is left without a result."""
    config = TransferConfig(transport="local-group", token=TOKEN, max_inflight=2, lease_s=0.3)
    metas = [TransferMeta(f"r{i}", [i], [i], SPEC.block_size, 0, 0, lease_expiry_unix_s=time.time() + 60)
             for i in range(5)]  # leases outlast the test: room never frees
    with _connected(config) as (rx, tx):
        tx._on_frame = lambda kind, hdr: None  # the ACKs are dropped
        out = tx.send_many(metas)
        assert [type(h) for h in out[:2]] == [TransferHandle] * 2 and tx.groups == [[1, 2]]
        assert all(isinstance(e, TransferError) and "unacked" in str(e) for e in out[2:]), out
        assert "send" in metas[3].hops and "send" not in metas[4].hops  # the third round was never prepared
    assert [h.wait(1) for h in out[:2]] == ["failed"] * 2  # close() fails what was never acked


def test_send_many_moves_and_writes_metas_in_chunks(monkeypatch):
    """A reserved group goes out CHUNK_ITEMS transfers at a time (one move and one METAS frame each,
    answered by one ACKS frame); every transfer is acked and delivered, shortest first."""
    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 3)
    LocalReceiver.frames.clear()
    with _connected(TransferConfig(transport="local-group", token=TOKEN)) as (rx, tx):
        tokens = [4, 4, 4, 4, 1, 4, 4]
        out = tx.send_many([TransferMeta(f"r{i}", [i], [i], n, 0, 0) for i, n in enumerate(tokens)])
        assert [h.wait(10) for h in out] == ["acked"] * 7
        got = [rx.recv(timeout_s=5).request_id for _ in tokens]
    assert got == ["r4", "r0", "r1", "r2", "r3", "r5", "r6"]  # fewest tokens first
    assert tx.groups == [[1, 2, 3], [4, 5, 6], [7]] and LocalReceiver.frames == [3, 3, 1]


def test_chunks_close_at_chunk_items_or_once_they_hold_chunk_bytes(monkeypatch):
    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 3)
    monkeypatch.setattr(sender_groups, "CHUNK_BYTES", 4 * SPEC.block_bytes)
    prep = lambda blocks: types.SimpleNamespace(num_bytes=blocks * SPEC.block_bytes)  # noqa: E731
    group = [((i, None), (None, prep(b), i)) for i, b in enumerate([1, 3, 1, 1, 1, 1, 5, 1])]
    sizes = [[item[1][1].num_bytes // SPEC.block_bytes for item in chunk] for chunk in sender_groups.chunks(group)]
    assert sizes == [[1, 3], [1, 1, 1], [1, 5], [1]]


def test_an_oversized_metas_frame_is_split_not_refused(monkeypatch):
    """Headers past the receiver's JSON limit (long prompts packed in) go as several METAS frames
    (halves), each within the limit; one header alone is sent as it is."""
    monkeypatch.setattr(wire, "MAX_JSON_BYTES", 600)
    headers = [{"seq": i, "meta": {"pad": "x" * 150}} for i in range(6)]
    bodies = sender_groups._metas_bodies(headers, {"event": 3})
    assert len(bodies) > 1 and all(len(b) <= 600 for b, _, _ in bodies)
    decoded = [json.loads(b) for b, _, _ in bodies]
    assert [h["seq"] for d in decoded for h in d["items"]] == list(range(6)) and all(d["event"] == 3 for d in decoded)
    assert [[h["seq"] for h in d["items"]] for d in decoded] == [list(range(a, b)) for _, a, b in bodies]
    assert len(sender_groups._metas_bodies([{"seq": 0, "meta": {"pad": "x" * 900}}], {})) == 1


def test_a_meta_past_the_frame_limit_fails_alone_and_the_connection_lives(monkeypatch):
    """One META too large for the receiver (a long prompt packed in) is refused before a byte is
    written: it fails with that reason, the rest of its chunk is acked, later sends still go."""
    with _connected(TransferConfig(transport="local-group", token=TOKEN)) as (rx, tx):
        monkeypatch.setattr(wire, "MAX_JSON_BYTES", 2000)
        metas = [TransferMeta(f"r{i}", [i], [i], SPEC.block_size, 0, 0) for i in range(3)]
        metas[1].sampling_state = {"pad": "x" * 3000}
        out = tx.send_many(metas)
        assert isinstance(out[1], wire.FrameError) and "exceeds" in str(out[1])
        assert [out[i].wait(10) for i in (0, 2)] == ["acked"] * 2
        assert tx.send(TransferMeta("later", [5], [5], SPEC.block_size, 0, 0)).wait(10) == "acked"
        assert [rx.recv(timeout_s=5).request_id for _ in range(3)] == ["r0", "r2", "later"]


def _second_chunk_fails(error: type, break_it) -> None:
    """send_many of one chunk and two more transfers with break_it(tx) making the second chunk's METAS
    fail: its transfers get the error and are not released (the caller ends them: one release a
    transfer), the first chunk's are acked; nothing stays pending."""
    released = {}
    with _connected(TransferConfig(transport="local-group", token=TOKEN),
                    on_release=lambda meta, status: released.__setitem__(meta.request_id, status)) as (rx, tx):
        break_it(tx)
        n, first = sender_groups.CHUNK_ITEMS + 2, sender_groups.CHUNK_ITEMS
        out = tx.send_many([TransferMeta(f"r{i}", [i], [i], SPEC.block_size, 0, 0) for i in range(n)])
        assert [h.wait(10) for h in out[:first]] == ["acked"] * first
        assert all(isinstance(e, error) for e in out[first:]), out[first:]
        deadline = time.monotonic() + 10
        while len(released) < first and time.monotonic() < deadline:
            time.sleep(0.01)
        assert tx._pending == {}
    assert released == {f"r{i}": "acked" for i in range(first)}


def test_a_failed_chunk_fails_its_transfers_only():
    """The METAS write of the second chunk fails."""
    def flaky_writes(tx):
        send, calls = tx._send_encoded, []

        def flaky(kind, body, payloads=()):
            calls.append(kind)
            if kind == wire.METAS and len(calls) == 2:
                raise OSError("connection reset")
            send(kind, body, payloads)
        tx._send_encoded = flaky
    _second_chunk_fails(OSError, flaky_writes)


def test_a_chunk_whose_metas_cannot_be_encoded_fails_its_transfers_only(monkeypatch):
    """Encoding the second chunk's METAS raises (a value JSON cannot hold): send_many returns."""
    real, calls = sender_groups._metas_bodies, []

    def unencodable_second(headers, extra, start=0):
        calls.append(len(headers))
        if len(calls) == 2:
            raise TypeError("Type is not JSON serializable: object")
        return real(headers, extra, start)
    monkeypatch.setattr(sender_groups, "_metas_bodies", unencodable_second)
    _second_chunk_fails(TypeError, lambda tx: None)


@pytest.mark.parametrize("where", ["none", "sampling", "lease", "hops", "extra"])
def test_metas_bodies_keep_non_finite_floats_as_json_writes_them(where):
    """The fast encoder writes a non-finite float as null; every place a METAS frame can hold a float
    (a META's lease, hop stamps, sampling state; the transport's common fields) is checked, so such a
    frame is written as json writes it (NaN / Infinity) and parses back the same."""
    import math

    meta = TransferMeta("r", [0], [0], 4, 0, 0, sampling_state={"temperature": 0.5, "seed": None, "stop": [1, 2]},
                        lease_expiry_unix_s=1e9)
    extra = {"event": 3}
    if where == "sampling":
        meta.sampling_state["nested"] = {"x": [float("nan")]}
    elif where == "lease":
        meta.lease_expiry_unix_s = float("inf")
    elif where == "extra":
        extra["scale"] = float("-inf")
    header = meta_header(7, meta)
    if where == "hops":
        header["hops"]["send"] = float("nan")
    ((body, _, _),) = sender_groups._metas_bodies([header], extra)
    want = json.dumps({"items": [header], **extra}, separators=(",", ":"))  # json: NaN and Infinity as such
    got_obj, want_obj = json.loads(body), json.loads(want)
    assert json.dumps(got_obj, sort_keys=True) == json.dumps(want_obj, sort_keys=True)  # NaN written as NaN
    if where == "none":
        assert math.isclose(got_obj["items"][0]["meta"]["sampling_state"]["temperature"], 0.5)
