"""Receiver over authenticated control connections (base of shm/tcp/cuda-ipc/rdma).

start() opens the Listener. Per sender connection: HELLO {spec, transport}
-> `_on_hello(conn_state, hello)` returns the transport's part of the reply
(shm path, IPC handle, QP info) -> loop over frames:
  DATA  -> `_on_data` (tcp only: payload lands straight in the pool; the
           last DATA frame of a transfer carries its META fields too)
  META  -> checks (ids in range, lease not expired) -> `_land(meta)` (staging
           copy, wait for the sender's CUDA event) -> queue for recv() ->
           ACK {seq, ok}; a META marked self_acked (shm: the sender wrote the
           pool itself and ran these checks) is answered only if refused
  METAS -> a chunk of a sender's group in one frame ({items: [META headers],
           + the fields common to them: cuda-ipc's event slot}): landed at once
           where the transport can (`_land_frame`; cuda-ipc: one event wait),
           else each item as a META; each checked and delivered, then one ACKS
           frame {items: [ACK headers]} answers them all
  BYE   -> end of this connection.
A bad META is NACKed (ok: false) and the connection goes on; a malformed frame
ends that connection (the Listener answers ERROR).
"""
from __future__ import annotations

import logging
import queue
import socket
import threading
import time

import torch

from inference.transfer import wire
from inference.transfer.base import KVReceiver, PoolSpec, TransferConfig, TransferError
from inference.transfer.listener import Listener
from inference.transfer.meta import TransferMeta, hop_stamps
from inference.transfer.source import check_landing

log = logging.getLogger("inference.transfer.receiver")


class ControlReceiver(KVReceiver):
    def __init__(self, pool: torch.Tensor, config: TransferConfig):
        self.pool, self.config = pool, config
        self.spec = PoolSpec.of_pool(pool)
        # SimpleQueue (C): a put and a get cost ~0.2 us against queue.Queue's ~3.7 (its Python
        # Condition), paid per transfer on the thread that also reads the frames
        self._arrived: queue.SimpleQueue[TransferMeta] = queue.SimpleQueue()
        self._listener: Listener | None = None

    # transport hooks ------------------------------------------------------
    def _on_hello(self, state: dict, hello: dict) -> dict:
        return {}

    def _on_data(self, sock: socket.socket, state: dict, hdr: dict, payload_len: int) -> None:
        raise wire.FrameError(f"{self.name} carries no DATA frames")

    def _land(self, state: dict, meta: TransferMeta) -> None:
        pass

    def _land_with(self, state: dict, meta: TransferMeta, hdr: dict) -> None:
        """_land with the META's transport fields (cuda-ipc: the event slot)."""
        self._land(state, meta)

    def _on_disconnect(self, state: dict) -> None:
        pass

    # lifecycle -------------------------------------------------------------
    def start(self) -> str:
        self._listener = Listener(self.config.host, self.config.port, self.config.resolved_token(), self._serve, self.config.timeout_s)
        return self.address

    @property
    def address(self) -> str:
        if self._listener is None:
            raise TransferError("receiver not started")
        return self._listener.address

    def recv(self, timeout_s: float | None = None) -> TransferMeta | None:
        try:
            return self._arrived.get(timeout=timeout_s)
        except queue.Empty:
            return None

    def close(self) -> None:
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    # one connection -----------------------------------------------------------
    def _serve(self, sock: socket.socket, peer: str) -> None:
        state: dict = {"peer": peer, "sock": sock, "send_lock": threading.Lock()}  # ACKs may come from two threads (shm ring)
        kind, hello, _ = wire.recv_frame(sock, 0)
        wire.expect(kind, wire.HELLO)
        if hello.get("transport") != self.name:
            raise wire.FrameError(f"sender speaks {hello.get('transport')!r}, this receiver is {self.name!r}")
        try:
            state["peer_spec"] = PoolSpec.from_dict(hello.get("spec") or {})
            reply = self._on_hello(state, hello)
        except (ValueError, TransferError) as e:
            raise wire.FrameError(f"bad HELLO: {e}") from None
        wire.send_frame(sock, wire.HELLO, {"spec": self.spec.to_dict(), **reply})
        try:
            self._frame_loop(sock, state)
        finally:
            self._on_disconnect(state)

    def _frame_loop(self, sock: socket.socket, state: dict) -> None:
        while True:
            kind, hdr, n = wire.recv_frame(sock, self.spec.pool_bytes)
            if kind == wire.BYE:
                return
            if kind == wire.DATA:
                self._on_data(sock, state, hdr, n)
            elif kind == wire.META and n == 0:
                self._answer_meta(sock, state, hdr)
            elif kind == wire.METAS and n == 0:
                self._answer_metas(sock, state, hdr)
            else:
                raise wire.FrameError(f"unexpected {wire.KIND_NAMES[kind]} frame with {n} payload bytes")

    def _answer_meta(self, sock: socket.socket, state: dict, hdr: dict) -> None:
        """Check and deliver one META (a META frame, or the META fields a
        transport's last DATA frame carries), then ACK it."""
        self._reply(sock, state, hdr, self._on_meta(state, hdr))

    def _answer_metas(self, sock: socket.socket, state: dict, hdr: dict) -> None:
        """A METAS frame (one chunk of a sender's group): each item checked and delivered as a
        META with the frame's common fields, then one ACKS frame for them all. A transport that
        lands a whole frame at once (`_land_frame`: cuda-ipc waits on the frame's one event) does
        so once, before the items; its failure refuses every item. The frame's shape (distinct
        integer seqs, no self-acked item) is checked before anything is delivered; the ACKs of
        items delivered go out even if a later item ends the connection."""
        received = time.time()
        items = hdr.pop("items", None)
        if not isinstance(items, list) or not 0 < len(items) <= wire.MAX_GROUP_ITEMS or not all(isinstance(x, dict) for x in items):
            raise wire.FrameError(f"METAS needs a list of 1 to {wire.MAX_GROUP_ITEMS} META headers")
        seqs = [x.get("seq") for x in items]
        if not all(type(q) is int for q in seqs) or len(set(seqs)) != len(seqs):
            raise wire.FrameError("METAS items need distinct integer seqs")
        if "self_acked" in hdr or any("self_acked" in x for x in items):
            raise wire.FrameError("METAS carries no self-acked transfer")
        try:
            landed, refused = self._land_frame(state, hdr), None
        except TransferError as e:
            landed, refused = True, str(e)
        acks = []
        try:
            for item in items:
                # the common fields only matter to an item landed alone (self_acked was refused above)
                acks.append(self._on_meta(state, item if landed else {**hdr, **item}, landed, refused, received))
        finally:
            if acks:
                with state["send_lock"]:
                    wire.send_frame(sock, wire.ACKS, {"items": acks})

    def _land_frame(self, state: dict, hdr: dict) -> bool:
        """Land every item of a METAS frame at once from the frame's common fields; True when done
        (its items are then not landed one by one), False (default): each lands as a META."""
        return False

    def _reply(self, sock: socket.socket, state: dict, hdr: dict, ack: dict) -> None:
        """Send the ACK of one checked META (shm's ring path answers through here too)."""
        if not (ack["ok"] and hdr.get("self_acked") is True):  # a self-acked META is answered only when refused
            with state["send_lock"]:
                wire.send_frame(sock, wire.ACK, ack)

    def _on_meta(self, state: dict, hdr: dict, landed: bool = False, refused: str | None = None,
                 received: float | None = None) -> dict:
        """Check, land (unless `landed`: its METAS frame landed at once) and deliver one META;
        returns its ACK. `refused`: the frame's landing failed with that error. `received`: when
        its frame was read (a METAS frame's landing wait comes after), else now."""
        received = time.time() if received is None else received
        seq = hdr.get("seq")
        if type(seq) is not int:
            raise wire.FrameError("META without an integer seq")
        try:
            meta = TransferMeta.from_wire(hdr.get("meta"))
            check_landing(meta, self.spec)
            if refused is not None:
                raise TransferError(f"{meta.request_id}: {refused}")
            if meta.is_expired() and hdr.get("self_acked") is not True:  # a self-acked one landed before META left
                raise TransferError(f"{meta.request_id}: lease expired before the KV landed")
            if not landed:
                self._land_with(state, meta, hdr)
        except (ValueError, TransferError) as e:
            log.warning("rejected transfer from %s: %s", state["peer"], e)
            return {"seq": seq, "ok": False, "error": str(e)}
        meta.hops = hops = hop_stamps(hdr.get("hops"))  # never raises
        hops["received"], hops["landed"] = received, time.time()
        self._deliver(meta)
        return {"seq": seq, "ok": True}

    def _deliver(self, meta: TransferMeta) -> None:
        self._arrived.put(meta)
