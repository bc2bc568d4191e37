"""Sender over an authenticated control connection (base of shm/tcp/cuda-ipc/rdma).

connect(): TCP connect -> HMAC handshake -> HELLO {spec, transport, ...} ->
HELLO reply {spec, ...} -> `_attach(reply)` (map shm, open IPC handle, connect
the QP). send(meta): prepare (check ids, convert, plan) -> `_move(seq, prep)`
(the transport's data path; the KV has left the source when it returns; it may
return extra META fields, e.g. the CUDA event to wait on) -> META frame.
Completion, two ways:
  receiver-acked (tcp, cuda-ipc, shm through staging): a reader thread takes
    ACK frames, finishes the handle and calls on_release(meta, "acked");
    leases that run out first give "lease_expired".
  self-acked (`self_acks`, shm into the peer's own pool): when `_move` returns
    the KV already sits in the destination pool, so the sender runs the
    receiver's checks (ids, lease) before moving, marks the META "self_acked"
    (answered only if refused) and finishes the handle in send().
At most config.max_inflight transfers are unacked at a time.
Release, once a transfer: a send that returns a handle ends in one on_release;
a send that raises (send_many: an exception in that meta's place) never calls
it, its caller ends the meta (the prefill worker: kv_senders.py). Never while
the sending thread is still inside that transfer's move or META write: a lost
stream, a lease or close() finishing it then sets its status at once and
leaves the release to the sending thread, which makes it when it leaves the
move (after `_quiesce()`; sender_acks.py). A move or META write that raises
after another path finished the transfer returns that handle, released by
the sending thread, rather than the error.
Groups of sends: sender_groups.py (send_many; shm's self-acked groups:
shm_groups.py). ACKs, leases and lost
connections: sender_acks.py.

Streams (tcp: config.tcp_streams): several connections to one receiver, each
authenticated and HELLO'd, each with its own ack reader. A transfer's frames,
META and ACK all use one stream, the one with the fewest unacked bytes (free
buffer space for back-to-back sends). A lost stream fails its transfers only;
send() fails when none is left.
"""
from __future__ import annotations

import socket
import threading
import time

import torch

from inference.transfer import wire
from inference.transfer.auth import client_handshake
from inference.transfer.base import KVSender, PoolSpec, ReleaseCallback, TransferConfig, TransferError, TransferHandle
from inference.transfer.meta import TransferMeta, meta_header
from inference.transfer.sender_acks import AckReader, Stream
from inference.transfer.sender_groups import GroupedSends
from inference.transfer.source import PreparedTransfer, flat_bytes, prepare


class ControlSender(GroupedSends, AckReader, KVSender):
    def __init__(self, pool: torch.Tensor, config: TransferConfig, on_release: ReleaseCallback | None = None):
        self.pool, self.config, self.on_release = pool, config, on_release
        self.spec = PoolSpec.of_pool(pool)
        self._pool_bytes = flat_bytes(pool)
        self.peer_spec: PoolSpec | None = None
        self._sock: socket.socket | None = None
        self._pending: dict[int, TransferHandle] = {}
        self._moving: set[int] = set()  # reserved seqs the sending thread has not left yet (under _room)
        self._deferred: dict[int, TransferHandle] = {}  # finished while moving: released by _leave (under _room)
        self._lock = threading.Lock()  # stream 0's write side (shm, cuda-ipc write there)
        self._room = threading.Condition(threading.Lock())  # guards _pending, _moving, _deferred and _seq; send() waits here when full
        self._seq = 0
        self._streams: list[Stream] = []
        self._next_stream = 0  # round-robin start among equally loaded streams
        self._closed = threading.Event()
        self.self_acks = False  # set by _attach when _move lands the KV in the receiver's pool itself

    # transport hooks ------------------------------------------------------
    def _hello(self) -> dict:
        return {}

    def _attach(self, reply: dict) -> None:
        pass

    def _num_streams(self) -> int:
        """Connections to open to the receiver (tcp: config.tcp_streams)."""
        return 1

    def _attach_stream(self, stream: Stream) -> None:
        """Set up an extra stream (index >= 1) after its HELLO exchange."""

    def _move(self, seq: int, prep: PreparedTransfer) -> dict | None:
        """Move the KV; returns extra META header fields (or None)."""
        raise NotImplementedError

    def _quiesce(self) -> None:
        """Wait until no work the moves issued still reads the source (before a non-ack release;
        called once the sending thread has left the transfer's move, so none is issued after)."""

    # lifecycle -------------------------------------------------------------
    def connect(self, address: str) -> None:
        sock, reply = self._open(address)
        self.peer_spec = PoolSpec.from_dict(reply.get("spec", {}))
        first = Stream(0, sock)
        self._sock, self._lock, self._streams = sock, first.lock, [first]
        try:
            self._attach(reply)
            for i in range(1, self._num_streams()):
                self._streams.append(Stream(i, self._open(address)[0]))
                self._attach_stream(self._streams[-1])
        except BaseException:
            for st in self._streams:
                st.sock.close()
            self._streams = []
            raise
        for st in self._streams:
            st.reader = threading.Thread(target=self._read_loop, args=(st,), name=f"kv-sender-acks-{st.index}", daemon=True)
            st.reader.start()

    def _open(self, address: str) -> tuple[socket.socket, dict]:
        """One connection: TCP connect -> token handshake -> HELLO exchange."""
        host, _, port = address.rpartition(":")
        sock = socket.create_connection((host, int(port)), timeout=self.config.timeout_s)
        try:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            client_handshake(sock, self.config.resolved_token())
            wire.send_frame(sock, wire.HELLO, {"transport": self.name, "spec": self.spec.to_dict(), **self._hello()})
            kind, reply, _ = wire.recv_frame(sock, 0)
            if kind == wire.ERROR:
                raise TransferError(f"{self.name}: receiver refused HELLO: {reply.get('error')}")
            wire.expect(kind, wire.HELLO)
            sock.settimeout(None)
        except BaseException:
            sock.close()
            raise
        return sock, reply

    def is_alive(self) -> bool:
        """Connected, not closed, and some stream's ack reader still running (the receiver is there)."""
        return self._sock is not None and not self._closed.is_set() and any(st.alive and st.reader.is_alive() for st in self._streams)

    def send(self, meta: TransferMeta) -> TransferHandle:
        if not self.is_alive():  # checked here: a self-acked send would not notice a receiver gone otherwise
            raise self._gone()
        prep = self._prepare(meta)
        if self.self_acks:
            return self._send_self_acked(meta, prep)
        ((seq, handle),) = self._reserve([(meta, prep)])
        try:
            self._send_meta(meta_header(seq, meta, **(self._move(seq, prep) or {})))
        except Exception as e:
            if self._fail(seq, e):
                raise
        finally:
            self._leave((seq,))  # a release another path deferred meanwhile happens here
        return handle

    def _fail(self, seq: int, error: Exception) -> bool:
        """A transfer whose move or META write raised: finished as failed, naming the error, and not
        released (the caller is handed the error and ends the meta). False when a lost stream, a
        lease or close() finished it first: that path left its release to the sending thread's
        `_leave`, so the caller gets its handle instead."""
        return self._finish((seq,), "failed", f"{type(error).__name__}: {error}", release=False) > 0

    def _gone(self) -> TransferError:
        connected = self._sock is not None and not self._closed.is_set()
        return TransferError(f"{self.name}: " + ("the receiver went away" if connected else "sender is not connected"))

    def _prepare(self, meta: TransferMeta) -> PreparedTransfer:
        meta.hops["send"] = time.time()
        meta.with_lease(self.config.lease_s)
        return prepare(self.pool, self.spec, self.peer_spec, meta, self.config, self._pool_bytes)

    def _reserve(self, ready: list) -> list[tuple[int, TransferHandle]]:
        """Pending slots for the first items of `ready` ((meta, prep, ...) tuples): waits until fewer
        than max_inflight transfers are unacked, then takes as many as fit (at least one), all on the
        least loaded stream, each one moving (`_moving`) until the sending thread's `_leave`.
        Returns (seq, handle) for each item taken, in order."""
        limit = self.config.max_inflight
        with self._room:
            if len(self._pending) >= limit and not self._room.wait_for(lambda: len(self._pending) < limit, self.config.lease_s):
                raise TransferError(f"{self.name}: {limit} transfers unacked for {self.config.lease_s} s")
            if (stream := self._pick_stream()) is None:
                raise TransferError(f"{self.name}: the receiver went away (no connection left)")
            taken = []
            for meta, prep, *_ in ready[:limit - len(self._pending)]:
                self._seq += 1
                handle = TransferHandle(meta)
                self._pending[self._seq], stream.seqs[self._seq] = handle, prep.num_bytes
                self._moving.add(self._seq)
                taken.append((self._seq, handle))
        return taken

    def _pick_stream(self) -> Stream | None:
        """The live stream with the fewest unacked bytes (under _room); ties: round robin."""
        n, best, least = len(self._streams), None, 0
        for k in range(n):
            st = self._streams[(self._next_stream + k) % n]
            load = sum(st.seqs.values())
            if st.alive and (best is None or load < least):
                best, least = st, load
        if best is not None:
            self._next_stream = (best.index + 1) % n
        return best

    def _send_self_acked(self, meta: TransferMeta, prep: PreparedTransfer) -> TransferHandle:
        """A transport whose _move lands the KV in the receiver's pool (`self_acks`) sends it here
        (shm: shm_groups.py, a chunk of one); nothing stays pending."""
        raise NotImplementedError

    def _send_meta(self, header: dict) -> None:
        """Deliver one META frame."""
        self._send_frame(wire.META, header)

    def _send_frame(self, kind: int, header: dict, payloads: list | tuple = ()) -> None:
        self._send_encoded(kind, wire.encode_json(header), payloads)

    def _send_encoded(self, kind: int, body: bytes, payloads: list | tuple = ()) -> None:
        """One frame whose header is encoded already (wire.encode_json), on stream 0."""
        with self._lock:
            wire.sendmsg_all(self._sock, wire.encoded_frame_buffers(kind, body, payloads))

    def close(self) -> None:
        if self._closed.is_set():
            return
        self._closed.set()
        for st in self._streams:
            try:
                with st.lock:
                    wire.send_frame(st.sock, wire.BYE, {})
                st.sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        for st in self._streams:
            if st.reader is not None:
                st.reader.join(timeout=2)
            st.sock.close()
        self._fail_all("sender closed")
