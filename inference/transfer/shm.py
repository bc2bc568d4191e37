"""`shm`: same-host transfer through a shared-memory mapping of the pool.

Zero-copy path: the decode worker allocates its pool with
ShmReceiver.allocate_pool(spec), a tensor mapped from a /dev/shm file (mode
0600). The receiver's HELLO reply names that file; the sender maps it once and
copies its blocks straight into the destination blocks (per coalesced run:
libc memmove, or torch's copy_ team when that measures faster: memcopy.py).
When the copy returns the KV is in the receiver's pool, so the transfer is
self-acked (sender.py): the sender runs the receiver's checks before
copying, hands over one META that nobody answers (the receiver answers only
a refusal) and completes the handle itself; no thread waits on another on
the way. That META goes through
a per-connection ring in shared memory with a futex doorbell (doorbell.py),
not through the TCP stack, and recv() takes it from the ring itself; a full
ring or a large META falls back to a META frame on the socket.
A pool not allocated that way gets a staging segment of the same size: the
sender writes there and the receiver copies the landed blocks into its pool
on META and ACKs (one extra copy and a round trip, said in the log).
A group of sends (send_many: a prefill step's transfers to one decode worker)
goes in chunks, each copied back to back and published with one bell:
shm_groups.py. Segment files (made, mapped, unlinked when the receiver closes
and at exit, and swept when a killed process left them behind): shm_segments.py.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

import torch

from inference.transfer import doorbell, memcopy, wire
from inference.transfer.base import PoolSpec, TransferConfig, TransferError, Transport, TransportUnavailable
from inference.transfer.meta import TransferMeta
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.shm_groups import SelfAckedGroups
from inference.transfer.shm_segments import SHM_DIR, create_segment, map_peer_segment, unlink
from inference.transfer.source import PreparedTransfer, flat_bytes

log = logging.getLogger("inference.transfer.shm")

_SEGMENTS: dict[int, str] = {}  # data_ptr of a pool this process allocated -> its file


class ShmSender(SelfAckedGroups, ControlSender):
    name = "shm"

    def _attach(self, reply: dict) -> None:
        if self.pool.device.type != "cpu":
            raise TransferError("shm: the source pool must be in CPU memory")
        self._dst = map_peer_segment(reply.get("shm_path"), reply.get("shm_bytes"))
        if self._dst.numel() != self.peer_spec.pool_bytes:
            raise TransferError("shm: segment size does not match the receiver's pool")
        self.self_acks = reply.get("zero_copy") is True  # the copy lands in the pool itself
        self._attach_ring(reply)

    def _attach_ring(self, reply: dict) -> None:
        self._ring = None
        if self.self_acks and doorbell.AVAILABLE and reply.get("ring_path") and reply.get("bell_path"):
            self._ring_mem = map_peer_segment(reply.get("ring_path"), doorbell.RING_BYTES)
            self._bell_mem = map_peer_segment(reply.get("bell_path"), doorbell.BELL_BYTES)
            self._ring, self._bell = doorbell.Ring(self._ring_mem.data_ptr()), doorbell.Bell(self._bell_mem.data_ptr())

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        # libc memmove or torch's copy_ team, whichever copies faster on the
        # cores as they are now (memcopy.py)
        memcopy.copy_runs(self._dst, prep.src_bytes, prep.copies)


class ShmReceiver(ControlReceiver):
    name = "shm"

    @classmethod
    def allocate_pool(cls, spec: PoolSpec, device: str = "cpu") -> torch.Tensor:
        if device != "cpu":
            raise TransferError("shm: pools live in CPU shared memory")
        path, mapped = create_segment(spec.pool_bytes)
        pool = mapped.view(spec.torch_dtype).view(spec.shape)
        _SEGMENTS[pool.data_ptr()] = path
        return pool

    def __init__(self, pool: torch.Tensor, config: TransferConfig):
        super().__init__(pool, config)
        if pool.device.type != "cpu":
            raise TransferError("shm: the destination pool must be in CPU memory")
        self._path = _SEGMENTS.get(pool.data_ptr())
        self._staging: torch.Tensor | None = None
        if self._path is None:
            log.info("shm: pool not allocated by ShmReceiver.allocate_pool; staging through a segment (one extra copy)")
            self._path, self._staging = create_segment(self.spec.pool_bytes)
        self._rings: dict[int, dict] = {}  # connection state by id, for those with a META ring
        self._ring_lock = threading.Lock()  # one consumer per ring at a time
        self._bell = None
        if self._staging is None and doorbell.AVAILABLE:
            self._bell_path, self._bell_mem = create_segment(doorbell.BELL_BYTES)
            self._bell = doorbell.Bell(self._bell_mem.data_ptr())

    def _on_hello(self, state: dict, hello: dict) -> dict:
        reply = {"shm_path": self._path, "shm_bytes": self.spec.pool_bytes, "zero_copy": self._staging is None}
        if self._bell is not None:
            path, mem = create_segment(doorbell.RING_BYTES)
            state.update(ring_path=path, ring_mem=mem, ring=doorbell.Ring(mem.data_ptr()))
            with self._ring_lock:
                self._rings[id(state)] = state
            reply.update(ring_path=path, bell_path=self._bell_path)
        return reply

    # METAs from the rings: taken by recv() itself ------------------------------
    def _deliver(self, meta: TransferMeta) -> None:
        super()._deliver(meta)
        if self._bell is not None:
            self._bell.ring()  # a META frame from the socket wakes a blocking recv() too

    def recv(self, timeout_s: float | None = None) -> TransferMeta | None:
        if self._bell is None:
            return super().recv(timeout_s)
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        while True:
            seen = self._bell.value()
            self._take_rings()
            try:
                return self._arrived.get_nowait()
            except queue.Empty:
                pass
            left = 0.1 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                return None
            self._bell.wait(seen, min(left, 0.1))  # bounded: a wake lost to a crash costs 0.1 s at most

    def _take_rings(self) -> None:
        with self._ring_lock:
            for state in list(self._rings.values()):
                for payload in state["ring"].take():
                    self._ring_meta(state, payload)

    def _ring_meta(self, state: dict, payload: bytes) -> None:
        try:
            hdr = wire.loads_json(payload)
            if not isinstance(hdr, dict):
                raise ValueError("not a JSON object")
            ack = self._on_meta(state, hdr)
        except (ValueError, wire.FrameError) as e:
            log.warning("shm: bad META in the ring from %s: %s", state["peer"], e)
            return
        try:
            self._reply(state["sock"], state, hdr, ack)
        except OSError as e:
            log.info("shm: could not answer %s: %s", state["peer"], e)

    def _on_disconnect(self, state: dict) -> None:
        if "ring" in state:
            with self._ring_lock:
                for payload in state["ring"].take():  # published before the BYE
                    self._ring_meta(state, payload)
                state["ring"].close()
                self._rings.pop(id(state), None)
            unlink(state["ring_path"])

    def _land(self, state: dict, meta: TransferMeta) -> None:
        if self._staging is None:
            return  # the sender wrote into the pool itself
        dst, bb = flat_bytes(self.pool), self.spec.block_bytes
        for first, count in meta.dst_block_ids.runs:  # a block named twice is copied twice, harmlessly
            a, b = first * bb, (first + count) * bb
            dst[a:b].copy_(self._staging[a:b])

    def close(self) -> None:
        super().close()
        unlink(self._path)
        if self._bell is not None:
            unlink(self._bell_path)
        _SEGMENTS.pop(self.pool.data_ptr(), None)


def _check(config: TransferConfig) -> None:
    if not os.path.isdir(SHM_DIR) or not os.access(SHM_DIR, os.W_OK):
        raise TransportUnavailable(f"shm: {SHM_DIR} is missing or not writable; choose tcp")


TRANSPORT = Transport("shm", ShmSender, ShmReceiver, _check)
