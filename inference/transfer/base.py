"""KV transfer interface: pool description, config, sender/receiver roles.

Lifecycle (decode side = receiver, prefill side = sender):
  receiver: pool = Receiver.allocate_pool(spec)  ->  Receiver(pool, config)
            .start() -> address  (listener up; the address goes to the router)
            .recv(timeout_s) -> TransferMeta once that request's KV has landed
            .close()
  sender:   Sender(pool, config, on_release)  ->  .connect(address)
            .send(meta) -> TransferHandle (returns after the KV left the source
            pool; the ack arrives later)  ->  on_release(meta, reason) frees the
            source blocks when the receiver acks ("acked"), when the lease
            expires ("lease_expired") or when the transfer failed ("failed"):
            once for each handle returned, and only once the sender no
            longer reads those blocks (a lease, lost receiver or close() that
            ends a transfer mid-move sets its status at once; the sending
            thread releases it when the move returns or raises). A send that
            raises (send_many: an exception in that meta's place) never calls
            it: the caller, handed the error, ends that meta (frees its blocks).
A transport module (shm, tcp, cuda_ipc, rdma, fake) exposes `TRANSPORT`, a
`Transport` naming its Sender/Receiver classes; `registry.select_transport`
imports it lazily, so a missing optional dependency fails only when chosen.
"""
from __future__ import annotations

import _thread
import logging
import math
import os
import threading
from functools import cached_property
from dataclasses import asdict, dataclass, field
from typing import Callable

import torch

from inference.env import env_int
from inference.transfer.errors import TransferError, TransportUnavailable  # noqa: F401 (re-exported)
from inference.transfer.meta import TransferMeta

log = logging.getLogger(__name__)
TCP_STREAMS_DEFAULT = 1  # connections per tcp sender: 2 and 4 gave no gain in `docpipe bench transfer` on 2 cores
_DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class PoolSpec:
    """Shape of one worker's KV pool:
    kv_pool[num_blocks, num_layers, 2, block_size, num_kv_heads, head_dim]."""

    num_blocks: int  # blocks in the pool
    num_layers: int  # decoder layers
    block_size: int  # tokens per block
    num_kv_heads: int  # KV heads held by this worker (after TP split)
    head_dim: int  # elements per head
    dtype: str  # "float32" | "bfloat16" | "float16"

    def __post_init__(self) -> None:
        if self.dtype not in _DTYPES:
            raise ValueError(f"pool dtype must be one of {sorted(_DTYPES)}, got {self.dtype!r}")
        for name in ("num_blocks", "num_layers", "block_size", "num_kv_heads", "head_dim"):
            if not isinstance(getattr(self, name), int) or getattr(self, name) < 1:
                raise ValueError(f"PoolSpec.{name} must be a positive int, got {getattr(self, name)!r}")

    @property
    def shape(self) -> tuple[int, ...]:
        return (self.num_blocks, self.num_layers, 2, self.block_size, self.num_kv_heads, self.head_dim)

    @property
    def torch_dtype(self) -> torch.dtype:
        return _DTYPES[self.dtype]

    @cached_property  # read on every transfer; the spec is frozen
    def block_bytes(self) -> int:
        elem = torch.empty((), dtype=self.torch_dtype).element_size()
        return self.num_layers * 2 * self.block_size * self.num_kv_heads * self.head_dim * elem

    @property
    def pool_bytes(self) -> int:
        return self.num_blocks * self.block_bytes

    @cached_property
    def _layout(self) -> tuple:
        return (self.num_layers, self.block_size, self.num_kv_heads, self.head_dim, self.dtype)

    def same_layout(self, other: "PoolSpec") -> bool:
        """True when blocks can be copied byte for byte (no conversion)."""
        return self._layout == other._layout

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "PoolSpec":
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except (KeyError, TypeError) as e:
            raise ValueError(f"bad pool spec {d!r}: {e}") from None

    @classmethod
    def of_pool(cls, pool: torch.Tensor) -> "PoolSpec":
        if pool.dim() != 6 or pool.shape[2] != 2 or not pool.is_contiguous():
            raise ValueError(f"KV pool must be a contiguous [blocks, layers, 2, block_size, heads, head_dim] tensor, got {tuple(pool.shape)}")
        names = {v: k for k, v in _DTYPES.items()}
        if pool.dtype not in names:
            raise ValueError(f"unsupported KV pool dtype {pool.dtype}")
        n, layers, _, bs, heads, dim = pool.shape
        return cls(n, layers, bs, heads, dim, names[pool.dtype])


@dataclass
class TransferConfig:
    """One config for the transfer subsystem (layout [transfer] table maps here)."""

    transport: str = "tcp"  # registry name: shm | tcp | cuda-ipc | rdma | fake
    fallback: str | None = None  # transport to use when `transport` is unavailable here
    host: str = "127.0.0.1"  # listener address; loopback unless a layout says otherwise
    port: int = 0  # listener port; 0 = any free port
    token: str | None = None  # shared secret; None = env DOCPIPE_TOKEN
    min_unit_bytes: int = 256 << 10  # work units are at least this large (except the last)
    max_unit_bytes: int = 16 << 20  # a single copy / frame / work request is at most this
    # a transfer not acked this long after send fails; its source blocks are freed then, or, if the
    # sending thread is still writing it (a receiver that stopped reading), once that write returns
    lease_s: float = 30.0
    max_inflight: int = 64  # unacked transfers before send() blocks
    timeout_s: float = 10.0  # connect and handshake limit
    dst_head_offset: int = 0  # first source KV head this receiver holds (TP split)
    rdma_device: str | None = None  # e.g. "mlx5_0"; None = first device found
    rdma_port: int = 1  # HCA port
    rdma_gid_index: int = 0  # GID table index (RoCE v2 is often 3)
    extra: dict = field(default_factory=dict)  # transport-specific settings
    # tcp connections per sender, transfers spread over them (env DOCPIPE_TCP_STREAMS overrides the default)
    tcp_streams: int = field(default_factory=lambda: env_int("DOCPIPE_TCP_STREAMS", TCP_STREAMS_DEFAULT))

    def __post_init__(self) -> None:
        if self.min_unit_bytes < 1 or self.max_unit_bytes < self.min_unit_bytes:
            raise ValueError("need 0 < min_unit_bytes <= max_unit_bytes")
        if self.max_inflight < 1 or not 0 < self.lease_s < math.inf:  # NaN fails too
            raise ValueError(f"max_inflight must be >= 1 and lease_s a finite number > 0, got {self.max_inflight}, {self.lease_s}")
        if not (isinstance(self.tcp_streams, int) and 1 <= self.tcp_streams <= 64):
            raise ValueError(f"tcp_streams must be an int in [1, 64], got {self.tcp_streams!r}")

    def resolved_token(self) -> bytes:
        token = self.token or os.environ.get("DOCPIPE_TOKEN")
        if not token:
            raise TransferError("no transfer token: set DOCPIPE_TOKEN or TransferConfig.token (layout [transfer] token)")
        return token.encode()


ReleaseCallback = Callable[[TransferMeta, str], None]


class TransferHandle:
    """Completion of one send: status pending -> acked | lease_expired | failed.

    A C-level lock held while pending is the latch (wait() passes it on), not
    a threading.Event: an Event is a Python Condition, and creating and
    setting one per transfer showed in the ack path's cost."""

    def __init__(self, meta: TransferMeta):
        self.meta = meta
        self.status = "pending"
        self.error: str | None = None
        self._latch = _thread.allocate_lock()
        self._latch.acquire()

    @classmethod
    def finished(cls, meta: TransferMeta, status: str) -> "TransferHandle":
        """A handle final at birth (a self-acked send)."""
        h = cls(meta)
        h.status = status
        h._latch.release()
        return h

    def _finish(self, status: str, error: str | None = None) -> bool:
        """Set the final status once; returns False when already final."""
        with _FINISH_LOCK:  # the reader's ACK and a lease expiry may race
            if self.status != "pending":
                return False
            self.status, self.error = status, error
        self._latch.release()
        return True

    @property
    def done(self) -> bool:
        return self.status != "pending"

    def wait(self, timeout_s: float | None = None) -> str:
        if self.status == "pending":
            if not self._latch.acquire(timeout=-1 if timeout_s is None else max(timeout_s, 0)):
                raise TimeoutError(f"transfer {self.meta.request_id} not acked within {timeout_s} s")
            self._latch.release()  # let any other waiter through
        return self.status


_FINISH_LOCK = threading.Lock()


class KVReceiver:
    """Decode side: owns the destination pool, accepts senders, delivers metas."""

    name = "base"

    @classmethod
    def allocate_pool(cls, spec: PoolSpec, device: str = "cpu") -> torch.Tensor:
        """A pool this transport can receive into with the fewest copies."""
        return torch.zeros(spec.shape, dtype=spec.torch_dtype, device=device)

    def start(self) -> str:
        raise NotImplementedError

    def recv(self, timeout_s: float | None = None) -> TransferMeta | None:
        raise NotImplementedError

    def close(self) -> None:
        raise NotImplementedError


class KVSender:
    """Prefill side: owns the source pool, pushes blocks to one receiver."""

    name = "base"
    peer_spec: PoolSpec | None = None  # the receiver's pool layout, once connected
    on_release: ReleaseCallback | None = None

    def connect(self, address: str) -> None:
        raise NotImplementedError

    def _release(self, meta: TransferMeta, status: str) -> None:
        """on_release(meta, status); a callback that raises is logged and the sender goes on (the
        transfer is final: nothing would retry its release, and other transfers still need theirs)."""
        if self.on_release is not None:
            try:
                self.on_release(meta, status)
            except Exception:  # noqa: BLE001 (the owner's error: logged, not the connection's)
                log.exception("%s: releasing transfer %s (%s) failed", self.name, meta.request_id, status)

    def send(self, meta: TransferMeta) -> TransferHandle:
        raise NotImplementedError

    batches_sends = False  # this class's send_many takes a group at once (else it is send() in a loop)

    def send_many(self, metas: list[TransferMeta]) -> list["TransferHandle | Exception"]:
        """Send `metas`; per meta, in their order, its handle or the exception its send raised. This
        default sends one at a time; a transport with `batches_sends` moves a group at once
        (cuda-ipc: in chunks, each one wait for the stream the KV was written on, one event and one METAS frame;
        shm, self-acked: in chunks, each copied back to back and published with one bell)."""
        out: list[TransferHandle | Exception] = []
        for meta in metas:
            try:
                out.append(self.send(meta))
            except Exception as e:  # noqa: BLE001 (handed to the caller, per meta)
                out.append(e)
        return out

    def close(self) -> None:
        raise NotImplementedError


@dataclass(frozen=True)
class Transport:
    """What a transport module registers: its classes and an availability check."""

    name: str
    sender_cls: type
    receiver_cls: type
    check_available: Callable[[TransferConfig], None]  # raises TransportUnavailable
