"""Groups of self-acked shm sends (a mixin of ShmSender): send_many for the zero-copy path.

A self-acked send copies its runs into the receiver's pool, then publishes its META in the ring
and rings the bell; a lone send (send()) is a chunk of one. A group goes in chunks (sender_groups.chunks: CHUNK_ITEMS transfers or
CHUNK_BYTES), prepared max_inflight at a time (a conversion stages each one's KV in host memory):
per chunk, the receiver checked to be there (send() checks it per transfer: a self-acked send
notices a receiver gone no other way), each transfer's lease and META checked, its headers encoded
(the `sent` stamps before the copy, as a lone send's), every run of the chunk copied by one
memcopy.copy_runs job per source tensor, then the METAs published (one bell; past a full ring,
META frames on the socket, one at a time) and the transfers released. Per transfer that saves the
Python between copies: on 2 cores ~75 us of a 4 MiB send, run with caches a copy just cleared.

Failures, as a lone send's: a meta that fails to prepare, or whose lease ran out by its chunk's
copy, fails alone before anything of it is written; a META too large for a frame fails alone before
the copy; a failed copy fails the chunk; a META that could not be published fails alone, while
those published before it are acked (the receiver takes them) and released. A failure is its
exception in the results and never released here (the caller ends that meta, as after a raising
send()); a release callback that raises is logged, its transfer stays acked and the others go on. Runs of one chunk are
copied concurrently, so two transfers of a chunk naming the same destination block land in no set
order (in two chunks the later one wins); block managers hand a block to one request at a time.
Staged shm (not self-acked): send() for each. Results as KVSender.send_many, in the given order
(no shortest-first: nothing here waits for an ACK). Nothing of a self-acked send is pending, so no
other thread (lease check, lost connection, close()) can end or release it while it copies: its
release is this thread's, after the copy.

The host class provides: config, self_acks, is_alive(), _gone(), _prepare(meta), _room, _seq,
_dst, _ring, _bell, _lock, _send_encoded(kind, body) and on_release.
"""
from __future__ import annotations

import logging
import time

from inference.transfer import memcopy, wire
from inference.transfer.base import KVSender, TransferError, TransferHandle
from inference.transfer.meta import TransferMeta, meta_header
from inference.transfer.sender_groups import chunks, prepared
from inference.transfer.source import PreparedTransfer

log = logging.getLogger("inference.transfer.shm")


class SelfAckedGroups:
    batches_sends = True  # self-acked: a chunk's copies back to back, one bell (else send() for each)

    def send_many(self, metas: list[TransferMeta]) -> list[TransferHandle | Exception]:
        if not self.self_acks or len(metas) < 2:
            return KVSender.send_many(self, metas)
        out: list[TransferHandle | Exception | None] = [None] * len(metas)
        for ready in prepared(self, metas, range(len(metas)), out):
            for chunk in chunks(ready, lambda item: item[1]):
                if not self.is_alive():  # checked a chunk at a time (a lone send: in send())
                    for _, _, i in chunk:
                        out[i] = self._gone()
                    continue
                self._send_chunk(chunk, out)
        return out

    def _send_self_acked(self, meta: TransferMeta, prep: PreparedTransfer) -> TransferHandle:
        """A lone send (send()): a chunk of one; its failure raised."""
        out = [None]
        self._send_chunk([(meta, prep, 0)], out)
        if isinstance(out[0], Exception):
            raise out[0]
        return out[0]

    def _send_chunk(self, chunk: list, out: list) -> None:
        """Send a chunk of (meta, prep, index in out) items; each one's handle or error goes in out.
        The caller has checked that the receiver is alive."""
        with self._room:
            first = self._seq + 1
            self._seq += len(chunk)
        now = time.time()
        live, payloads = [], []
        for k, (meta, prep, i) in enumerate(chunk):
            if meta.is_expired(now):
                out[i] = TransferError(f"{meta.request_id}: lease expired before the KV was sent")
                continue
            try:
                payload = wire.encode_json(meta_header(first + k, meta, now, self_acked=True))
                wire.check_header_bytes(wire.META, payload)
            except Exception as e:  # noqa: BLE001 (this meta fails alone, before the copy)
                self._settle(meta, "failed", out, i, e)
                continue
            live.append((meta, prep, i))
            payloads.append(payload)
        try:
            sources: dict[int, tuple] = {}  # one copy job per source tensor (the pool, or conversion staging)
            for _, prep, _ in live:
                sources.setdefault(id(prep.src_bytes), (prep.src_bytes, []))[1].extend(prep.copies)
            for src, copies in sources.values():
                memcopy.copy_runs(self._dst, src, copies)
        except Exception as e:  # noqa: BLE001 (every transfer of the chunk fails with it)
            for meta, _, i in live:
                self._settle(meta, "failed", out, i, e)
            return
        published, error = self._publish_many(payloads)  # only once every byte landed
        for k, (meta, _, i) in enumerate(live):
            if k < published:
                self._settle(meta, "acked", out, i, TransferHandle.finished(meta, "acked"))
            else:
                self._settle(meta, "failed", out, i, error)

    def _settle(self, meta: TransferMeta, status: str, out: list, i: int, result) -> None:
        """out[i] = result; an acked one after on_release(meta, status) (a callback that raises is
        logged and the transfer stays acked: it was released once, as the ACK reader does for the
        other transports). A failed one is not released: its exception goes back and the caller
        ends the meta."""
        out[i] = result
        if status == "failed":
            log.warning("transfer %s failed: %s: %s", meta.request_id, type(result).__name__, result)
            return
        self._release(meta, status)

    def _publish_many(self, payloads: list[bytes]) -> tuple[int, Exception | None]:
        """Each payload into the ring, the bell rung once; past a full ring (or without one) the
        rest as META frames on the socket, one at a time. Returns (how many went out, in order,
        the error that stopped the rest or None)."""
        taken = 0
        if self._ring is not None:
            with self._lock:  # one producer per ring
                while taken < len(payloads) and self._ring.publish(payloads[taken]):
                    taken += 1
                if taken:
                    self._bell.ring()
        try:
            for payload in payloads[taken:]:  # ring full or absent: the same bytes as a META frame
                self._send_encoded(wire.META, payload)
                taken += 1
        except Exception as e:  # noqa: BLE001 (the caller fails the ones not out)
            return taken, e
        return taken, None
