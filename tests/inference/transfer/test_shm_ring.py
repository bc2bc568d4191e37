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


def test_ring_keeps_order_refuses_when_full_oversized_or_closed():
    _mem, ring, bell = _ring()
    assert ring.take() == []
    before = bell.value()
    for i in range(doorbell.SLOTS):
        assert ring.publish(b"m%d" % i, bell)
    assert bell.value() == (before + doorbell.SLOTS) & 0xFFFFFFFF
    assert not ring.publish(b"one too many", bell)  # full: the caller falls back to the socket
    got = ring.take()
    assert got == [b"m%d" % i for i in range(doorbell.SLOTS)]
    assert not ring.publish(b"x" * doorbell.SLOT_BYTES, bell)  # larger than a slot
    assert ring.publish(b"after wrap", bell) and ring.take() == [b"after wrap"]
    ring.close()
    assert not ring.publish(b"late", bell)


def test_bell_wait_returns_on_ring_and_times_out_otherwise():
    _mem, ring, bell = _ring()
    seen = bell.value()
    t0 = time.monotonic()
    bell.wait(seen, 0.05)  # nobody rings: the timeout ends it
    assert time.monotonic() - t0 >= 0.04
    threading.Timer(0.05, lambda: ring.publish(b"x", bell)).start()
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
