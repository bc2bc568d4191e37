"""ACKs, leases and lost connections of a ControlSender (a mixin of it).

One reader thread per stream (`_read_loop`) takes the receiver's ACK (and ACKS) frames
and finishes their transfers; every LEASE_CHECK_S it also expires the leases
that ran out first. A finished transfer leaves `_pending` (waking a send
waiting for room), and on_release(meta, status) tells the owner, which
frees the source blocks: after `_quiesce()` (the data path no longer reads
them) unless the receiver acked. A lost stream fails the transfers sent on
it; close() fails whatever is left. Each transfer is finished, and released,
once: whichever path takes it out of `_pending` first (a send whose own move
or META write failed takes it without a release: its caller gets the error
and ends the meta, sender.py).

Never while the sending thread still reads its blocks: a transfer is in
`_moving` from its reservation until the sending thread has left its move and
META write (returned or raised: `_leave`). A path that finishes a moving
transfer (lease, lost stream, close()) sets its status at once, so waiters
see it, but leaves the release to `_deferred`; `_leave` makes it there,
after `_quiesce()` (the move may have issued device work after that path
finished it). An ACK is released where it arrives, moving or not: the
receiver has every byte, so nothing reads the blocks for it any more. The
price of this order: a lease that runs out while the sending thread is
blocked writing (a receiver alive but not reading) frees nothing until that
write returns or fails. A move that raised after another path
finished its transfer hands back that handle (sender.py), released by its
own `_leave`.

The host class provides: config, name, on_release, self_acks, _room (a
Condition guarding _pending, _moving and _deferred), _pending (seq ->
TransferHandle), _moving (seqs whose move runs), _deferred (seq -> handle
finished while moving), _streams, _closed (an Event) and _quiesce().
"""
from __future__ import annotations

import logging
import select
import socket
import threading
import time
from dataclasses import dataclass, field

from inference.transfer import wire
from inference.transfer.base import TransferError

log = logging.getLogger("inference.transfer.sender")

LEASE_CHECK_S = 0.05  # leases are checked this often, not on every ACK


@dataclass(eq=False)
class Stream:
    """One authenticated connection to the receiver and its ack reader."""
    index: int  # 0 = the connection the transport attached to
    sock: socket.socket
    lock: threading.Lock = field(default_factory=threading.Lock)  # the write side
    seqs: dict = field(default_factory=dict)  # unacked transfer seq -> its bytes (under _room)
    alive: bool = True  # False once its reader saw the connection end (under _room)
    reader: threading.Thread | None = None


class AckReader:
    def _take(self, seqs, status: str, error: str | None = None, release: bool = True) -> list:
        """Finish the pending transfers among seqs with `status`, under one hold of _room: each
        leaves _pending and its stream, waking the send()s waiting for the room it frees. Returns
        (handle, deferred) for each one finished here; deferred: its move still runs, so its
        release waits in _deferred for `_leave` (only when `release`: the sending thread's own
        failure is never released by the sender)."""
        limit, taken = self.config.max_inflight, []
        with self._room:
            full = len(self._pending) >= limit
            for seq in seqs:
                handle = self._pending.pop(seq, None)
                for st in self._streams:  # a handful
                    st.seqs.pop(seq, None)
                if handle is None or not handle._finish(status, error):
                    continue
                later = release and status != "acked" and seq in self._moving
                if later:
                    self._deferred[seq] = handle
                taken.append((handle, later))
            if taken and full:  # only a full sender has send()s waiting for room
                self._room.notify(len(taken))
        return taken

    def _finish(self, seqs, status: str, error: str | None = None, release: bool = True) -> int:
        """Finish the pending transfers among seqs with `status` (taken out together: an ACKS frame,
        a lost stream, the leases that ran out) and, if `release`, hand each to on_release: now,
        after one `_quiesce()` unless acked, or when the sending thread leaves its move (`_leave`).
        Returns how many were finished here; one finished already (another path released it, or
        will) is left alone: a transfer is released once."""
        taken = self._take(seqs, status, error, release) if seqs else []
        if error:
            for handle, _ in taken:
                log.warning("transfer %s %s: %s", handle.meta.request_id, status, error)
        now = [handle for handle, later in taken if not later]
        if now and status != "acked":
            self._quiesce_logged()  # the caller frees the source blocks next
        if release:
            for handle in now:
                self._release(handle.meta, status)
        return len(taken)

    def _leave(self, seqs) -> None:
        """The sending thread is done with seqs (their move and META write returned or raised):
        they stop moving, and those another path finished meanwhile are released now, after
        `_quiesce()` unless acked."""
        with self._room:
            self._moving.difference_update(seqs)
            if not self._moving and self._closed.is_set():
                self._room.notify_all()  # a close() waiting for the moves to stop (_wait_moves_left)
            if not self._deferred:  # the usual case: nothing finished them while they moved
                return
            handles = [self._deferred.pop(seq) for seq in seqs if seq in self._deferred]
        if not handles:  # deferred ones of another chunk: theirs to release (no device wait here)
            return
        interrupted = None
        try:
            self._quiesce_logged()  # (deferred ones are never acked)
        except BaseException as e:  # an interrupt: the releases below still happen, then it goes on
            interrupted = e
        for handle in handles:  # out of _deferred now: released here or never
            try:
                self._release(handle.meta, handle.status)
            except BaseException as e:
                interrupted = interrupted or e
        if interrupted is not None:
            raise interrupted

    def _wait_moves_left(self, timeout_s: float) -> bool:
        """For a transport's close() after the base close: wait until no sending thread is inside
        a move (it may still use what the transport is about to free, e.g. RDMA's queue pair and
        memory region). False when one still runs after timeout_s."""
        with self._room:
            return self._room.wait_for(lambda: not self._moving, timeout_s)

    def _quiesce_logged(self) -> None:
        """_quiesce(); a failure is logged and the release goes on (the transfer has ended)."""
        try:
            self._quiesce()
        except Exception as e:
            log.warning("%s: waiting for the data path before release failed: %s", self.name, e)

    def _expire_leases(self) -> None:
        now = time.time()
        with self._room:
            expired = [s for s, h in self._pending.items() if h.meta.is_expired(now)]
        self._finish(expired, "lease_expired")

    def _read_loop(self, stream: Stream) -> None:
        next_check = time.monotonic() + LEASE_CHECK_S
        frames = wire.SmallFrameReader(stream.sock)
        try:
            while not self._closed.is_set():
                # select, not a socket timeout: a timeout would also cut sends
                ready, _, _ = select.select([stream.sock], [], [], LEASE_CHECK_S)
                if time.monotonic() >= next_check:
                    self._expire_leases()
                    next_check = time.monotonic() + LEASE_CHECK_S
                if ready:
                    for kind, hdr in frames.read():
                        self._on_frame(kind, hdr)
        except (OSError, ValueError, TransferError) as e:
            if not self._closed.is_set():
                log.warning("%s sender lost connection %d to its receiver: %s", self.name, stream.index, e)
                self._lose_stream(stream, str(e))
        except Exception as e:  # a bug: fail this stream's transfers, which no lease check would reach now
            log.exception("%s sender's ack reader %d failed", self.name, stream.index)
            self._lose_stream(stream, f"ack reader failed: {type(e).__name__}: {e}")

    def _lose_stream(self, stream: Stream, error: str) -> None:
        """Fail the transfers sent on a lost stream; no new one goes there."""
        with self._room:
            stream.alive = False
            seqs = list(stream.seqs)  # every unacked transfer is on one stream: losing all fails all
        try:
            stream.sock.shutdown(socket.SHUT_RDWR)  # a send() blocked on it returns at once
        except OSError:
            pass
        self._finish(seqs, "failed", error)

    def _on_frame(self, kind: int, hdr: dict) -> None:
        if kind == wire.ACK:
            self._on_ack(hdr)
        elif kind == wire.ACKS:  # the answer to a METAS frame
            items = hdr.get("items")
            if not isinstance(items, list) or not all(isinstance(a, dict) for a in items):
                raise wire.FrameError("ACKS without a list of ACK headers")
            acked = []  # a run of plain ok ACKs, finished together (one lock round)
            try:
                for ack in items:  # in order: an error in one still finishes the ones before
                    seq = ack.get("seq")
                    if ack.get("ok") is True and type(seq) is int:
                        acked.append(seq)
                    else:
                        self._finish(acked, "acked")
                        acked = []
                        self._on_ack(ack)
            finally:
                self._finish(acked, "acked")
        elif kind == wire.ERROR:
            raise TransferError(f"receiver error: {hdr.get('error')}")
        else:
            raise wire.FrameError(f"unexpected {wire.KIND_NAMES[kind]} frame from receiver")

    def _on_ack(self, hdr: dict) -> None:
        ok = hdr.get("ok") is True
        seq = hdr.get("seq")
        if type(seq) is not int:
            raise wire.FrameError("ACK without an integer seq")
        if not ok and self.self_acks:  # only a refusal comes back; the handle is long final
            log.error("%s: receiver refused self-acked transfer %d after it landed: %s", self.name, seq, hdr.get("error"))
        self._finish((seq,), "acked" if ok else "failed", None if ok else str(hdr.get("error")))

    def _fail_all(self, error: str) -> None:
        with self._room:
            seqs = list(self._pending)
        self._finish(seqs, "failed", error)
