"""`shm`: same-host transfer through a shared-memory mapping of the pool.

Zero-copy path: the decode worker allocates its pool with
ShmReceiver.allocate_pool(spec), a tensor mapped from a /dev/shm file (mode
0600). The receiver's HELLO reply names that file; the sender maps it and
copies its blocks straight into the destination blocks (one memcpy per
segment, torch copy_), then sends META over the control socket. A pool not
allocated that way gets a staging segment of the same size: the sender writes
there and the receiver copies the landed blocks into its pool on META (one
extra copy, said in the log). Segments are unlinked when the receiver closes
(mappings stay valid) and at interpreter exit.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import secrets
from concurrent.futures import ThreadPoolExecutor

import torch

from inference.transfer.base import PoolSpec, TransferConfig, TransferError, Transport, TransportUnavailable
from inference.transfer.meta import TransferMeta
from inference.transfer.plan import coalesce
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.source import PreparedTransfer, flat_bytes

log = logging.getLogger("inference.transfer.shm")

SHM_DIR = "/dev/shm"
_PREFIX = "docpipe-kv-"
_SEGMENTS: dict[int, str] = {}  # data_ptr of a pool this process allocated -> its file
_CREATED: set[str] = set()  # files to unlink at exit
PARALLEL_MIN_BYTES = 32 << 20  # smaller transfers copy on the calling thread
SLICE_MIN_BYTES = 1 << 20  # no copy thread gets less than this
_COPY_THREADS = min(8, os.cpu_count() or 1)
_POOL: ThreadPoolExecutor | None = None


def _copy_pool() -> ThreadPoolExecutor:
    global _POOL
    if _POOL is None:
        _POOL = ThreadPoolExecutor(_COPY_THREADS, thread_name_prefix="shm-copy")
    return _POOL


def _create_segment(num_bytes: int) -> tuple[str, torch.Tensor]:
    path = os.path.join(SHM_DIR, f"{_PREFIX}{os.getpid()}-{secrets.token_hex(8)}")
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

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        # libc memmove with the GIL released, large transfers cut into slices
        # copied by a few long-lived threads: one core cannot saturate memory
        # bandwidth, and torch's copy_ forks an OpenMP team per copy, which
        # stalls for a scheduler slice whenever the receiver holds a core.
        src, dst = prep.src_bytes.data_ptr(), self._dst.data_ptr()
        copies = [(dst + s.dst_offset_bytes, src + s.src_offset_bytes, s.num_bytes)
                  for unit in prep.units for s in unit.segments]
        if prep.num_bytes < PARALLEL_MIN_BYTES or _COPY_THREADS <= 1:
            for d, s_, n in copies:
                ctypes.memmove(d, s_, n)
            return
        step = max(SLICE_MIN_BYTES, -(-prep.num_bytes // _COPY_THREADS))
        slices = [(d + o, s_ + o, min(step, n - o)) for d, s_, n in copies for o in range(0, n, step)]
        list(_copy_pool().map(lambda a: ctypes.memmove(*a), slices))


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

    def _on_hello(self, state: dict, hello: dict) -> dict:
        return {"shm_path": self._path, "shm_bytes": self.spec.pool_bytes}

    def _land(self, state: dict, meta: TransferMeta) -> None:
        if self._staging is None:
            return  # the sender wrote into the pool itself
        dst, bb = flat_bytes(self.pool), self.spec.block_bytes
        for run in coalesce([(d, d) for d in meta.dst_block_ids]):
            a, b = run.dst_block * bb, (run.dst_block + run.num_blocks) * bb
            dst[a:b].copy_(self._staging[a:b])

    def close(self) -> None:
        super().close()
        _unlink(self._path)
        _SEGMENTS.pop(self.pool.data_ptr(), None)


def _check(config: TransferConfig) -> None:
    if not os.path.isdir(SHM_DIR) or not os.access(SHM_DIR, os.W_OK):
        raise TransportUnavailable(f"shm: {SHM_DIR} is missing or not writable; choose tcp")


TRANSPORT = Transport("shm", ShmSender, ShmReceiver, _check)
