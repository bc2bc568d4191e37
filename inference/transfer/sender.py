"""Sender over an authenticated control connection (base of shm/tcp/cuda-ipc/rdma).

connect(): TCP connect -> HMAC handshake -> HELLO {spec, transport, ...} ->
HELLO reply {spec, ...} -> `_attach(reply)` (map shm, open IPC handle, connect
the QP). send(meta): prepare (check ids, convert, plan) -> `_move(seq, prep)`
(the transport's data path; the KV has left the source when it returns) ->
META frame. A reader thread takes ACK frames, finishes the handle and calls
on_release(meta, "acked"); leases that run out first give "lease_expired".
At most config.max_inflight transfers are unacked at a time.
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time

import torch

from inference.transfer import wire
from inference.transfer.auth import client_handshake
from inference.transfer.base import KVSender, PoolSpec, ReleaseCallback, TransferConfig, TransferError, TransferHandle
from inference.transfer.meta import TransferMeta
from inference.transfer.source import PreparedTransfer, flat_bytes, prepare

log = logging.getLogger("inference.transfer.sender")


class ControlSender(KVSender):
    def __init__(self, pool: torch.Tensor, config: TransferConfig, on_release: ReleaseCallback | None = None):
        self.pool, self.config, self.on_release = pool, config, on_release
        self.spec = PoolSpec.of_pool(pool)
        self._pool_bytes = flat_bytes(pool)
        self.peer_spec: PoolSpec | None = None
        self._sock: socket.socket | None = None
        self._pending: dict[int, TransferHandle] = {}
        self._lock = threading.Lock()  # guards _pending and the socket's write side
        self._slots = threading.Semaphore(config.max_inflight)
        self._seq = 0
        self._closed = threading.Event()
        self._reader: threading.Thread | None = None

    # transport hooks ------------------------------------------------------
    def _hello(self) -> dict:
        return {}

    def _attach(self, reply: dict) -> None:
        pass

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        raise NotImplementedError

    # lifecycle -------------------------------------------------------------
    def connect(self, address: str) -> None:
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=self.config.timeout_s)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        client_handshake(sock, self.config.resolved_token())
        wire.send_frame(sock, wire.HELLO, {"transport": self.name, "spec": self.spec.to_dict(), **self._hello()})
        kind, reply, _ = wire.recv_frame(sock, 0)
        if kind == wire.ERROR:
            raise TransferError(f"{self.name}: receiver refused HELLO: {reply.get('error')}")
        wire.expect(kind, wire.HELLO)
        sock.settimeout(None)
        self.peer_spec = PoolSpec.from_dict(reply.get("spec", {}))
        self._sock = sock
        self._attach(reply)
        self._reader = threading.Thread(target=self._read_loop, name="kv-sender-acks", daemon=True)
        self._reader.start()

    def send(self, meta: TransferMeta) -> TransferHandle:
        if self._sock is None or self._closed.is_set():
            raise TransferError(f"{self.name}: sender is not connected")
        meta.with_lease(self.config.lease_s)
        prep = prepare(self.pool, self.spec, self.peer_spec, meta, self.config, self._pool_bytes)
        if not self._slots.acquire(timeout=self.config.lease_s):
            raise TransferError(f"{self.name}: {self.config.max_inflight} transfers unacked for {self.config.lease_s} s")
        handle = TransferHandle(meta)
        with self._lock:
            self._seq += 1
            seq = self._seq
            self._pending[seq] = handle
        try:
            self._move(seq, prep)
            with self._lock:
                wire.send_frame(self._sock, wire.META, {"seq": seq, "meta": meta.to_dict()})
        except Exception as e:
            self._finish(seq, "failed", f"{type(e).__name__}: {e}")
            raise
        return handle

    def _send_frame(self, kind: int, header: dict, payloads: list | tuple = ()) -> None:
        with self._lock:
            wire.send_frame(self._sock, kind, header, payloads)

    # acks and leases --------------------------------------------------------
    def _finish(self, seq: int, status: str, error: str | None = None) -> None:
        with self._lock:
            handle = self._pending.pop(seq, None)
        if handle is None or not handle._finish(status, error):
            return
        self._slots.release()
        if error:
            log.warning("transfer %s %s: %s", handle.meta.request_id, status, error)
        if self.on_release is not None:
            self.on_release(handle.meta, status)

    def _expire_leases(self) -> None:
        now = time.time()
        with self._lock:
            expired = [s for s, h in self._pending.items() if h.meta.is_expired(now)]
        for seq in expired:
            self._finish(seq, "lease_expired")

    def _read_loop(self) -> None:
        try:
            while not self._closed.is_set():
                # select, not a socket timeout: a timeout would also cut sends
                ready, _, _ = select.select([self._sock], [], [], 0.1)
                self._expire_leases()
                if not ready:
                    continue
                kind, hdr, n = wire.recv_frame(self._sock, 0)
                if kind == wire.ACK:
                    ok = hdr.get("ok") is True
                    self._finish(int(hdr.get("seq", -1)), "acked" if ok else "failed", None if ok else str(hdr.get("error")))
                elif kind == wire.ERROR:
                    raise TransferError(f"receiver error: {hdr.get('error')}")
                else:
                    raise wire.FrameError(f"unexpected {wire.KIND_NAMES[kind]} frame from receiver")
        except (OSError, ValueError, TransferError) as e:
            if not self._closed.is_set():
                log.warning("%s sender lost its receiver: %s", self.name, e)
                self._fail_all(str(e))

    def _fail_all(self, error: str) -> None:
        with self._lock:
            seqs = list(self._pending)
        for seq in seqs:
            self._finish(seq, "failed", error)

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        if self._sock is not None:
            try:
                self._send_frame(wire.BYE, {})
                self._sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            if self._reader is not None:
                self._reader.join(timeout=2)
            self._sock.close()
        self._fail_all("sender closed")
