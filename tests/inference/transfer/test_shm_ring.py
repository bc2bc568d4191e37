"""shm's self-acked path: the META ring and its futex bell, a handle final when
send() returns, a blocking recv() woken by the bell, the staging fallback that
still round-trips an ACK, and checks that run before anything is written."""
import ctypes
import threading
import time

import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferError, TransferMeta, select_transport
from inference.transfer import doorbell

from transfer_peers import TOKEN, random_pool

pytestmark = pytest.mark.skipif(not doorbell.AVAILABLE, reason="the futex ring needs x86-64 (TSO); shm uses META frames elsewhere")

SPEC = PoolSpec(16, 2, 16, 2, 32, "float32")  # 8 KiB blocks


def _ring():
    mem = ctypes.create_string_buffer(doorbell.RING_BYTES + doorbell.BELL_BYTES)
    base = ctypes.addressof(mem)
    return mem, doorbell.Ring(base), doorbell.Bell(base + doorbell.RING_BYTES)


def _publish(ring, bell, payload):
    """ring.publish, then the bell rung if the payload went in (as the sender does)."""
    if not ring.publish(payload):
        return False
    bell.ring()
    return True


def test_ring_keeps_order_refuses_when_full_oversized_or_closed():
    _mem, ring, bell = _ring()
    assert ring.take() == []
    before = bell.value()
    for i in range(doorbell.SLOTS):
        assert _publish(ring, bell, b"m%d" % i)
    assert bell.value() == (before + doorbell.SLOTS) & 0xFFFFFFFF
    assert not _publish(ring, bell, b"one too many")  # full: the caller falls back to the socket
    got = ring.take()
    assert got == [b"m%d" % i for i in range(doorbell.SLOTS)]
    assert not _publish(ring, bell, b"x" * doorbell.SLOT_BYTES)  # larger than a slot
    assert _publish(ring, bell, b"after wrap") and ring.take() == [b"after wrap"]
    ring.close()
    assert not _publish(ring, bell, b"late")


def test_bell_wait_returns_on_ring_and_times_out_otherwise():
    _mem, ring, bell = _ring()
    seen = bell.value()
    t0 = time.monotonic()
    bell.wait(seen, 0.05)  # nobody rings: the timeout ends it
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, lambda: _publish(ring, bell, b"x")).start()
    t0 = time.monotonic()
    bell.wait(seen, 5.0)
    assert time.monotonic() - t0 < 2.0 and ring.take() == [b"x"]
    t0 = time.monotonic()
    bell.wait(seen, 5.0)  # the word already moved past `seen`: no sleep at all
    assert time.monotonic() - t0 < 1.0


def _pair(pool=None, **cfg):
    t = select_transport("shm")
    config = TransferConfig(transport="shm", token=TOKEN, **cfg)
    rx = t.receiver_cls(pool if pool is not None else t.receiver_cls.allocate_pool(SPEC), config)
    released = []
    tx = t.sender_cls(random_pool(SPEC), config, lambda m, why: released.append((m.request_id, why)))
    tx.connect(rx.start())
    return rx, tx, released


def test_self_acked_send_is_final_on_return_and_recv_sees_it():
    rx, tx, released = _pair()
    assert tx.self_acks and tx._ring is not None
    h = tx.send(TransferMeta("a", [1, 2, 3], [9, 10, 11], 40, 5, -2, {"seed": 3}))
    assert h.done and h.wait(0) == "acked" and released == [("a", "acked")]
    meta = rx.recv(5)
    assert (meta.request_id, meta.dst_block_ids, meta.first_token_id, meta.sampling_state) == ("a", [9, 10, 11], 5, {"seed": 3})
    assert torch.equal(rx.pool[[9, 10, 11]], tx.pool[[1, 2, 3]])
    assert rx.recv(0) is None
    tx.close(); rx.close()


def test_blocking_recv_is_woken_by_the_bell():
    rx, tx, _ = _pair()
    threading.Timer(0.1, lambda: tx.send(TransferMeta("late", [0], [4], 16, 0, 0))).start()
    t0 = time.monotonic()
    meta = rx.recv(10)
    assert meta.request_id == "late" and time.monotonic() - t0 < 5
    tx.close(); rx.close()


def test_bad_ids_and_expired_leases_fail_before_any_write():
    rx, tx, released = _pair()
    with pytest.raises(TransferError, match="outside the destination pool"):
        tx.send(TransferMeta("far", [0], [SPEC.num_blocks], 16, 0, 0))
    with pytest.raises(TransferError, match="lease expired"):
        tx.send(TransferMeta("old", [0], [1], 16, 0, 0, lease_expiry_unix_s=time.time() - 1))
    assert torch.count_nonzero(rx.pool) == 0 and released == [] and rx.recv(0.2) is None
    tx.close(); rx.close()


def test_staging_pool_still_round_trips_an_ack():
    rx, tx, released = _pair(pool=torch.zeros(SPEC.shape))  # not from allocate_pool: staged, copied on META
    assert not tx.self_acks
    h = tx.send(TransferMeta("s", [5, 6], [0, 1], 32, 0, 0))
    assert h.wait(5) == "acked" and released == [("s", "acked")]
    assert rx.recv(5).request_id == "s" and torch.equal(rx.pool[[0, 1]], tx.pool[[5, 6]])
    tx.close(); rx.close()


def test_many_transfers_past_a_full_ring_all_arrive():
    """More sends than slots while nobody drains: the overflow goes as META frames."""
    rx, tx, released = _pair()
    n = doorbell.SLOTS + 20
    for i in range(n):
        tx.send(TransferMeta(f"m{i}", [i % SPEC.num_blocks], [(i + 1) % SPEC.num_blocks], 16, 0, 0))
    got = set()
    deadline = time.monotonic() + 20
    while len(got) < n and time.monotonic() < deadline:
        meta = rx.recv(1)
        if meta is not None:
            got.add(meta.request_id)
    assert got == {f"m{i}" for i in range(n)} and len(released) == n
    tx.close(); rx.close()


def test_self_acked_send_fails_once_the_receiver_is_gone():
    rx, tx, released = _pair()
    assert tx.send(TransferMeta("ok", [0], [1], 16, 0, 0)).wait(0) == "acked"
    rx.close()
    tx._streams[0].reader.join(5)  # the ack reader sees the connection end
    with pytest.raises(TransferError, match="went away"):
        tx.send(TransferMeta("lost", [0], [2], 16, 0, 0))
    assert released == [("ok", "acked")]
    tx.close()


def _drain(rx, n, timeout_s=20):
    got, deadline = {}, time.monotonic() + timeout_s
    while len(got) < n and time.monotonic() < deadline:
        meta = rx.recv(1)
        if meta is not None:
            got[meta.request_id] = meta
    return got


def test_send_many_copies_each_chunk_then_publishes_it_with_one_bell(monkeypatch):
    """A self-acked group: in chunks (2 here), every transfer landed and released as acked, in
    order; a meta with bad ids or an expired lease fails alone, before anything of it is written;
    the bell is rung once a chunk, not once a META."""
    from inference.transfer import sender_groups

    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 2)
    rx, tx, released = _pair()
    rings = []
    monkeypatch.setattr(tx._bell, "ring", lambda: rings.append(1))
    metas = [TransferMeta(f"g{i}", [i], [i + 8], 16, i, 0) for i in range(5)]
    metas.insert(2, TransferMeta("far", [0], [SPEC.num_blocks], 16, 0, 0))
    metas.insert(4, TransferMeta("old", [0], [15], 16, 0, 0, lease_expiry_unix_s=time.time() - 1))
    out = tx.send_many(metas)
    assert [type(r).__name__ for r in out] == ["TransferHandle"] * 2 + ["TransferError"] + ["TransferHandle"] + ["TransferError"] + ["TransferHandle"] * 2
    assert all(r.wait(0) == "acked" for r in out if not isinstance(r, Exception))
    assert released == [(f"g{i}", "acked") for i in range(5)] and len(rings) == 3  # chunks of 2, 2, 1
    got = _drain(rx, 5)
    assert sorted(got) == [f"g{i}" for i in range(5)] and [got[f"g{i}"].first_token_id for i in range(5)] == list(range(5))
    for i in range(5):
        assert torch.equal(rx.pool[i + 8], tx.pool[i])
    assert torch.count_nonzero(rx.pool[15]) == 0 and rx.recv(0.2) is None  # the expired one wrote nothing
    tx.close(); rx.close()


def test_send_many_a_failed_copy_fails_its_chunk_only(monkeypatch):
    from inference.transfer import memcopy, sender_groups

    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 2)
    rx, tx, released = _pair()
    real, calls = memcopy.copy_runs, []

    def second_fails(dst, src, runs):
        calls.append(runs)
        if len(calls) == 2:
            raise OSError("copy failed")
        real(dst, src, runs)
    monkeypatch.setattr(memcopy, "copy_runs", second_fails)
    out = tx.send_many([TransferMeta(f"c{i}", [i], [i + 8], 16, 0, 0) for i in range(6)])
    assert [isinstance(r, OSError) for r in out] == [False, False, True, True, False, False]
    assert released == [("c0", "acked"), ("c1", "acked"), ("c4", "acked"), ("c5", "acked")]  # failures: the caller's
    assert sorted(_drain(rx, 4)) == ["c0", "c1", "c4", "c5"] and rx.recv(0.2) is None  # no META for the failed chunk
    tx.close(); rx.close()


def test_send_many_past_a_full_ring_and_on_a_staged_pool_all_arrive():
    rx, tx, released = _pair()
    n = doorbell.SLOTS + 10  # one group larger than the ring while nobody drains: the rest as META frames
    out = tx.send_many([TransferMeta(f"m{i}", [i % SPEC.num_blocks], [(i + 3) % SPEC.num_blocks], 16, 0, 0) for i in range(n)])
    assert all(r.wait(0) == "acked" for r in out) and len(released) == n
    assert sorted(_drain(rx, n)) == sorted(f"m{i}" for i in range(n))
    tx.close(); rx.close()
    rx, tx, released = _pair(pool=torch.zeros(SPEC.shape))  # staged: send() for each, ACKed by the receiver
    out = tx.send_many([TransferMeta(f"s{i}", [i], [i + 1], 16, 0, 0) for i in range(3)])
    assert [h.wait(5) for h in out] == ["acked"] * 3 and sorted(_drain(rx, 3)) == ["s0", "s1", "s2"]
    tx.close(); rx.close()


def test_send_many_chunk_split_between_ring_and_socket_arrives(monkeypatch):
    from inference.transfer import sender_groups

    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 3)  # 1024 slots = 341 chunks + 1: one chunk half ring, half socket
    rx, tx, released = _pair()
    n = doorbell.SLOTS + 5
    out = tx.send_many([TransferMeta(f"m{i}", [i % SPEC.num_blocks], [(i + 3) % SPEC.num_blocks], 16, 0, 0) for i in range(n)])
    assert all(r.wait(0) == "acked" for r in out) and len(released) == n
    assert sorted(_drain(rx, n)) == sorted(f"m{i}" for i in range(n))
    tx.close(); rx.close()


def test_send_many_publish_failure_fails_only_the_metas_not_out(monkeypatch):
    """Without a ring (META frames): the socket fails at the chunk's second frame; the first is
    acked (the receiver takes it), the rest fail."""
    from inference.transfer import sender_groups, shm_groups

    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 3)
    rx, tx, released = _pair()
    tx._ring = None
    real, frames = shm_groups.wire.sendmsg_all, []

    def second_fails(sock, buffers):
        frames.append(1)
        if len(frames) == 2:
            raise BrokenPipeError("peer gone")
        real(sock, buffers)
    monkeypatch.setattr(shm_groups.wire, "sendmsg_all", second_fails)
    out = tx.send_many([TransferMeta(f"p{i}", [i], [i + 8], 16, 0, 0) for i in range(3)])
    assert out[0].wait(0) == "acked" and [type(r).__name__ for r in out[1:]] == ["BrokenPipeError"] * 2
    assert released == [("p0", "acked")]  # the failed ones are the caller's to end
    assert sorted(_drain(rx, 1)) == ["p0"]
    tx.close(); rx.close()


def test_send_many_checks_lease_and_receiver_per_chunk_and_survives_a_raising_release(monkeypatch):
    """Chunks of one: a lease that runs out while an earlier chunk copies fails that transfer
    alone (nothing written, no release); a release callback that raises is logged, its transfer
    stays acked (released once);
    a receiver gone after a copy fails that transfer (its META cannot go out) and the chunks after."""
    from inference.transfer import memcopy, sender_groups

    monkeypatch.setattr(sender_groups, "CHUNK_ITEMS", 1)
    rx, tx, released = _pair()
    metas = [TransferMeta(f"q{i}", [i], [i + 8], 16, 0, 0) for i in range(5)]
    real, copies = memcopy.copy_runs, []

    def copy_and_meddle(dst, src, runs):
        copies.append(len(copies))
        if len(copies) == 1:
            metas[1].lease_expiry_unix_s = time.time() - 1  # runs out before its chunk
        real(dst, src, runs)
        if len(copies) == 3:  # q3 copied, its META not out yet: the receiver goes away
            rx.close()
            tx._streams[0].reader.join(5)
            for _ in range(500):  # and its connection's ring is closed (by its own thread)
                if tx._ring._closed.value:
                    break
                time.sleep(0.01)
    monkeypatch.setattr(memcopy, "copy_runs", copy_and_meddle)
    release = tx.on_release

    def raising_for_q0(meta, why):
        release(meta, why)
        if meta.request_id == "q0":
            raise RuntimeError("owner failed on q0")
    tx.on_release = raising_for_q0
    out = tx.send_many(metas)
    assert out[0].wait(0) == "acked" and "lease expired" in str(out[1]) and out[2].wait(0) == "acked"
    assert isinstance(out[3], OSError) and "went away" in str(out[4])  # its META could not go out; the next not tried
    assert released == [("q0", "acked"), ("q2", "acked")] and len(copies) == 3  # q3's error: the caller's
    assert torch.count_nonzero(rx.pool[9]) == 0  # q1 wrote nothing
    tx.close()
