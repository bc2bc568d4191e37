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
Segments are unlinked when the receiver closes (mappings stay valid) and at
interpreter exit. A process killed first (SIGKILL, a crash: a decode worker's
whole pool) leaves its files in /dev/shm, which is memory; so the first
segment a process makes sweeps the files of processes that are gone: a
segment's name holds its maker's pid namespace and pid, and only files of this
namespace, this user and a pid no longer running are removed.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import queue
import secrets
import threading
import time

import torch

from inference.transfer import doorbell, memcopy, wire
from inference.transfer.base import PoolSpec, TransferConfig, TransferError, Transport, TransportUnavailable
from inference.transfer.meta import TransferMeta, meta_header
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.source import PreparedTransfer, flat_bytes

log = logging.getLogger("inference.transfer.shm")

SHM_DIR = "/dev/shm"
_PREFIX = "docpipe-kv-"
_SEGMENTS: dict[int, str] = {}  # data_ptr of a pool this process allocated -> its file
_CREATED: set[str] = set()  # files to unlink at exit


def _pid_namespace() -> str:
    """This process's pid namespace (its inode), so that a pid in a segment name is only read in
    the namespace it belongs to (containers may share /dev/shm without sharing pids)."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return "0"


_NAMESPACE = _pid_namespace()
_swept = False


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def sweep_stale_segments() -> list[str]:
    """Unlink the segments of processes that are gone: names `<prefix><namespace>-<pid>-<random>` of
    this pid namespace and this user whose pid no longer runs. Returns the paths removed.
    (A pid reused since only keeps a stale file longer; names of another form are left alone.)"""
    removed = []
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return removed
    for name in names:
        parts = name[len(_PREFIX):].split("-") if name.startswith(_PREFIX) else ()
        if len(parts) != 3 or parts[0] != _NAMESPACE or not parts[1].isdigit():
            continue
        pid, path = int(parts[1]), os.path.join(SHM_DIR, name)
        try:
            if pid == os.getpid() or _pid_alive(pid) or os.stat(path).st_uid != os.getuid():
                continue
            os.unlink(path)
        except OSError:  # gone meanwhile (another process swept it), or not ours to remove
            continue
        removed.append(path)
    if removed:
        total = len(removed)
        log.info("shm: removed %d segment file(s) of processes that are gone, e.g. %s", total, removed[0])
    return removed


def _create_segment(num_bytes: int) -> tuple[str, torch.Tensor]:
    global _swept
    if not _swept:
        _swept = True
        sweep_stale_segments()
    path = os.path.join(SHM_DIR, f"{_PREFIX}{_NAMESPACE}-{os.getpid()}-{secrets.token_hex(8)}")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    try:
        os.ftruncate(fd, num_bytes)
    finally:
        os.close(fd)
    _CREATED.add(path)
    mapped = torch.from_file(path, shared=True, size=num_bytes, dtype=torch.uint8)
    mapped.zero_()  # fault the pages in now, not during the first transfer
    return path, mapped


def _unlink(path: str) -> None:
    if path in _CREATED:
        _CREATED.discard(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


atexit.register(lambda: [_unlink(p) for p in list(_CREATED)])


def _map_peer_segment(path: object, num_bytes: object) -> torch.Tensor:
    if not isinstance(path, str) or type(num_bytes) is not int:
        raise TransferError("shm: HELLO reply lacks shm_path / shm_bytes")
    real = os.path.realpath(path)
    if os.path.dirname(real) != SHM_DIR or not os.path.basename(real).startswith(_PREFIX):
        raise TransferError(f"shm: refusing to map {path!r}: not a docpipe segment in {SHM_DIR}")
    if os.stat(real).st_size < num_bytes:
        raise TransferError(f"shm: segment {real} is smaller than the {num_bytes}-byte pool")
    mapped = torch.from_file(real, shared=True, size=num_bytes, dtype=torch.uint8)
    _populate_for_write(mapped)
    return mapped


_MADV_POPULATE_WRITE = 23  # Linux >= 5.14


def _populate_for_write(mapped: torch.Tensor) -> None:
    """Fault the whole peer mapping in, writable, without touching its bytes: a
    fresh mapping otherwise pays a page fault per 4 KiB on first write (measured:
    126 ms instead of 20 ms for the first 256 MiB copy). Older kernels say
    EINVAL; then the first transfers pay the faults."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.madvise(ctypes.c_void_p(mapped.data_ptr()), ctypes.c_size_t(mapped.numel()), _MADV_POPULATE_WRITE):
            log.debug("shm: MADV_POPULATE_WRITE unavailable (errno %d)", ctypes.get_errno())
    except (OSError, AttributeError):
        pass


class ShmSender(ControlSender):
    name = "shm"

    def _attach(self, reply: dict) -> None:
        if self.pool.device.type != "cpu":
            raise TransferError("shm: the source pool must be in CPU memory")
        self._dst = _map_peer_segment(reply.get("shm_path"), reply.get("shm_bytes"))
        if self._dst.numel() != self.peer_spec.pool_bytes:
            raise TransferError("shm: segment size does not match the receiver's pool")
        self.self_acks = reply.get("zero_copy") is True  # the copy lands in the pool itself
        self._attach_ring(reply)

    def _attach_ring(self, reply: dict) -> None:
        self._ring = None
        if self.self_acks and doorbell.AVAILABLE and reply.get("ring_path") and reply.get("bell_path"):
            self._ring_mem = _map_peer_segment(reply.get("ring_path"), doorbell.RING_BYTES)
            self._bell_mem = _map_peer_segment(reply.get("bell_path"), doorbell.BELL_BYTES)
            self._ring, self._bell = doorbell.Ring(self._ring_mem.data_ptr()), doorbell.Bell(self._bell_mem.data_ptr())

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        # libc memmove or torch's copy_ team, whichever copies faster on the
        # cores as they are now (memcopy.py)
        memcopy.copy_runs(self._dst, prep.src_bytes, prep.copies)

    def _move_then_meta(self, seq: int, prep: PreparedTransfer, meta: TransferMeta) -> None:
        # encoded before the move: its `sent` stamp is taken before the copy (kv_wire holds the copy here)
        payload = wire.encode_json(meta_header(seq, meta, self_acked=True))
        self._move(seq, prep)
        self._publish(payload)  # only once every byte landed

    def _send_meta(self, header: dict) -> None:
        self._publish(wire.encode_json(header))

    def _publish(self, payload: bytes) -> None:
        if self._ring is not None:
            with self._lock:  # one producer per ring
                if self._ring.publish(payload, self._bell):
                    return
        with self._lock:  # ring full or absent: the same bytes as a META frame
            wire.sendmsg_all(self._sock, wire.encoded_frame_buffers(wire.META, payload))


class ShmReceiver(ControlReceiver):
    name = "shm"

    @classmethod
    def allocate_pool(cls, spec: PoolSpec, device: str = "cpu") -> torch.Tensor:
        if device != "cpu":
            raise TransferError("shm: pools live in CPU shared memory")
        path, mapped = _create_segment(spec.pool_bytes)
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
            self._path, self._staging = _create_segment(self.spec.pool_bytes)
        self._rings: dict[int, dict] = {}  # connection state by id, for those with a META ring
        self._ring_lock = threading.Lock()  # one consumer per ring at a time
        self._bell = None
        if self._staging is None and doorbell.AVAILABLE:
            self._bell_path, self._bell_mem = _create_segment(doorbell.BELL_BYTES)
            self._bell = doorbell.Bell(self._bell_mem.data_ptr())

    def _on_hello(self, state: dict, hello: dict) -> dict:
        reply = {"shm_path": self._path, "shm_bytes": self.spec.pool_bytes, "zero_copy": self._staging is None}
        if self._bell is not None:
            path, mem = _create_segment(doorbell.RING_BYTES)
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
            _unlink(state["ring_path"])

    def _land(self, state: dict, meta: TransferMeta) -> None:
        if self._staging is None:
            return  # the sender wrote into the pool itself
        dst, bb = flat_bytes(self.pool), self.spec.block_bytes
        for first, count in meta.dst_block_ids.runs:  # a block named twice is copied twice, harmlessly
            a, b = first * bb, (first + count) * bb
            dst[a:b].copy_(self._staging[a:b])

    def close(self) -> None:
        super().close()
        _unlink(self._path)
        if self._bell is not None:
            _unlink(self._bell_path)
        _SEGMENTS.pop(self.pool.data_ptr(), None)


def _check(config: TransferConfig) -> None:
    if not os.path.isdir(SHM_DIR) or not os.access(SHM_DIR, os.W_OK):
        raise TransportUnavailable(f"shm: {SHM_DIR} is missing or not writable; choose tcp")


TRANSPORT = Transport("shm", ShmSender, ShmReceiver, _check)
