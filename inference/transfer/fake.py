"""`fake`: in-process loopback transport for tests and the embedded engine.

The receiver registers itself under "fake://N"; a sender in the same process
looks it up, runs the same prepare step (ids, conversion, plan) and copies the
segments with torch, then the receiver queues the meta and the handle is
acked at once. No sockets, no token.
"""
from __future__ import annotations

import itertools
import queue
import threading

import torch

from inference.transfer.base import (KVReceiver, KVSender, PoolSpec, ReleaseCallback, TransferConfig, TransferError,
                                     TransferHandle, Transport)
from inference.transfer.meta import TransferMeta
from inference.transfer.source import check_landing, flat_bytes, prepare

_ENDPOINTS: dict[str, "FakeReceiver"] = {}
_IDS = itertools.count(1)
_LOCK = threading.Lock()


class FakeReceiver(KVReceiver):
    name = "fake"

    def __init__(self, pool: torch.Tensor, config: TransferConfig | None = None):
        self.pool, self.spec = pool, PoolSpec.of_pool(pool)
        self._arrived: queue.Queue[TransferMeta] = queue.Queue()
        self._address: str | None = None

    def start(self) -> str:
        with _LOCK:
            self._address = f"fake://{next(_IDS)}"
            _ENDPOINTS[self._address] = self
        return self._address

    def recv(self, timeout_s: float | None = None) -> TransferMeta | None:
        try:
            return self._arrived.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def _deliver(self, meta: TransferMeta) -> None:
        check_landing(meta, self.spec)
        if meta.is_expired():
            raise TransferError(f"{meta.request_id}: lease expired before the KV landed")
        self._arrived.put(meta)

    def close(self) -> None:
        with _LOCK:
            _ENDPOINTS.pop(self._address or "", None)


class FakeSender(KVSender):
    name = "fake"

    def __init__(self, pool: torch.Tensor, config: TransferConfig | None = None, on_release: ReleaseCallback | None = None):
        self.pool, self.config, self.on_release = pool, config or TransferConfig(transport="fake"), on_release
        self.spec = PoolSpec.of_pool(pool)
        self._peer: FakeReceiver | None = None

    def connect(self, address: str) -> None:
        with _LOCK:
            self._peer = _ENDPOINTS.get(address)
        if self._peer is None:
            raise TransferError(f"fake: no receiver at {address!r} in this process")
        self.peer_spec = self._peer.spec

    def send(self, meta: TransferMeta) -> TransferHandle:
        if self._peer is None:
            raise TransferError("fake: sender is not connected")
        meta.with_lease(self.config.lease_s)
        prep = prepare(self.pool, self.spec, self._peer.spec, meta, self.config)
        dst = flat_bytes(self._peer.pool)
        for unit in prep.units:
            for s in unit.segments:
                dst[s.dst_offset_bytes:s.dst_offset_bytes + s.num_bytes].copy_(prep.src_bytes[s.src_offset_bytes:s.src_offset_bytes + s.num_bytes])
        handle = TransferHandle(meta)
        try:
            self._peer._deliver(meta)
            handle._finish("acked")
        except TransferError as e:
            handle._finish("failed", str(e))
        self._release(meta, handle.status)
        return handle

    def close(self) -> None:
        self._peer = None


TRANSPORT = Transport("fake", FakeSender, FakeReceiver, lambda config: None)
