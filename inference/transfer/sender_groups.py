"""Groups of sends (a mixin of ControlSender): send_many for transports that move several transfers
in one go (`batches_sends`; cuda-ipc: per chunk one wait for the stream the KV was written on, one
event, one METAS frame).

send_many(metas) takes them shortest prompt first (a META's cost, packing and landing, grows with its
tokens, so short requests, often short outputs, are not held behind long ones), at most max_inflight at
a time: those are prepared (checks, conversion into staging when the pools differ, plan), reserved as
room allows, and each reserved group goes out in chunks (CHUNK_ITEMS transfers or CHUNK_BYTES,
whichever comes first): one `_move_many` per chunk, then the chunk's METAs in one METAS frame (more
where the header would pass the receiver's limit), which the receiver answers with one ACKS frame.
So the receiver lands the first chunk while the next is moved, and a chunk costs one frame each way,
not one per transfer (session 10: per-transfer frames, ~100-190 us of host time a transfer on the
H200's host, held cuda-ipc at 29-40 % of the device copy). A meta that fails to prepare fails alone;
a failed move fails its chunk, a failed METAS write its frame's transfers; a connection lost
mid-group fails what it had not acked. Returns, per meta in the given order, its TransferHandle or
its exception; as with send(), a handle ends in one on_release and an exception in none (the caller
ends that meta), and a reserved transfer stays moving (sender_acks.py: a lease, lost stream or close()
finishing it leaves its release to this thread) until its chunk's move and frames are done. Without
`batches_sends`, or for a self-acked sender, it is send() for each (shm's self-acked groups have their
own send_many: shm_groups.py).

The host class provides: config, self_acks, is_alive(), _gone(), _prepare(meta), _reserve(ready),
_send_encoded(kind, body), _fail(seq, error) and _leave(seqs).
"""
from __future__ import annotations

import time

from inference.transfer import wire
from inference.transfer.base import TransferError, TransferHandle
from inference.transfer.meta import TransferMeta, meta_header
from inference.transfer.source import PreparedTransfer

# a chunk: one move, one METAS frame, one ACKS frame. Session 10 (H200, bench transfer): chunks of 16 /
# 128 MiB moved 4-64 MiB transfers 1.1-1.6x faster than 8 / 32 MiB; 256 MiB is ~0.15 ms of copying there
CHUNK_ITEMS = 16  # transfers a chunk takes at most
CHUNK_BYTES = 256 << 20  # a chunk closes once it holds this many bytes: the receiver waits for all of them


class GroupedSends:
    def send_many(self, metas: list[TransferMeta]) -> list[TransferHandle | Exception]:
        # self-acked senders (shm) group in SelfAckedGroups.send_many before this: the check is a guard
        if not self.batches_sends or self.self_acks or len(metas) < 2:
            return super().send_many(metas)
        if not self.is_alive():
            return [self._gone()] * len(metas)
        out: list[TransferHandle | Exception | None] = [None] * len(metas)
        order = sorted(range(len(metas)), key=lambda i: metas[i].num_tokens)  # stable: ties keep their order
        for ready in prepared(self, metas, order, out):
            while ready:
                try:
                    slots = self._reserve(ready)
                except TransferError as e:  # no room for lease_s, or the receiver went away: the rest fail
                    return [e if r is None else r for r in out]
                group, ready = list(zip(slots, ready)), ready[len(slots):]
                try:
                    for chunk in chunks(group):
                        self._move_chunk(chunk, out)
                except BaseException:  # (an interrupt) no reserved transfer may stay moving: its release would wait forever
                    self._leave([seq for (seq, _), _ in group])
                    raise
        return out

    def _move_chunk(self, chunk: list, out: list) -> None:
        """Move one chunk ((seq, handle), (meta, prep, index) pairs) and write its METAS frame(s);
        the handles, or the error that failed them, go into out. A failed move fails the chunk;
        a failed frame write fails that frame's transfers (a header past the receiver's limit is
        refused before a byte goes out, so the connection and the other frames are unharmed).
        The chunk's transfers stop moving on the way out (`_leave`)."""
        try:
            self._send_chunk_frames(chunk, out)
        finally:
            self._leave([seq for (seq, _), _ in chunk])

    def _send_chunk_frames(self, chunk: list, out: list) -> None:
        try:
            extra = self._move_many([(seq, prep) for (seq, _), (_, prep, _) in chunk]) or {}
            now = time.time()
            headers = [meta_header(seq, meta, now) for (seq, _), (meta, _, _) in chunk]
            bodies = _metas_bodies(headers, extra)  # encoded here: a header that cannot be fails the chunk
        except Exception as e:  # noqa: BLE001 (every transfer of the chunk fails with it)
            self._fail_items(chunk, e, out)
            return
        for body, a, b in bodies:
            try:
                self._send_encoded(wire.METAS, body)
            except Exception as e:  # noqa: BLE001 (this frame's transfers fail with it)
                self._fail_items(chunk[a:b], e, out)
                continue
            for (_, handle), (_, _, i) in chunk[a:b]:
                out[i] = handle

    def _fail_items(self, items: list, error: Exception, out: list) -> None:
        """Each item failed by error, unreleased (the caller ends it); one another path finished
        first gets its handle, as from send() (released when its chunk is left)."""
        for (seq, handle), (_, _, i) in items:
            out[i] = error if self._fail(seq, error) else handle

    def _move_many(self, items: list[tuple[int, PreparedTransfer]]) -> dict | None:
        """Move several transfers ((seq, prep) pairs); returns the META fields common to them all."""
        raise NotImplementedError


def prepared(sender, metas: list[TransferMeta], order, out: list):
    """(meta, prep, index in metas) lists for the indices of `order`, prepared max_inflight at a
    time (a conversion stages each one's KV); a meta that fails to prepare gets its exception in
    out and is left out."""
    limit = sender.config.max_inflight
    for start in range(0, len(order), limit):
        ready = []
        for i in order[start:start + limit]:
            try:
                ready.append((metas[i], sender._prepare(metas[i]), i))
            except Exception as e:  # noqa: BLE001 (this meta's error, handed back)
                out[i] = e
        yield ready


def chunks(group: list, prep_of=lambda item: item[1][1]):
    """Split a group (here: reserved ((seq, handle), (meta, prep, index)) pairs; `prep_of` finds an
    item's PreparedTransfer) into chunks of at most CHUNK_ITEMS transfers, each closed once it
    reaches CHUNK_BYTES."""
    chunk, nbytes = [], 0
    for item in group:
        chunk.append(item)
        nbytes += prep_of(item).num_bytes
        if len(chunk) >= CHUNK_ITEMS or nbytes >= CHUNK_BYTES:
            yield chunk
            chunk, nbytes = [], 0
    if chunk:
        yield chunk


def _metas_bodies(headers: list[dict], extra: dict, start: int = 0) -> list[tuple[bytes, int, int]]:
    """The encoded METAS frames of one chunk as (body, first, end) over `headers`: one frame,
    unless its header would pass the receiver's limit (wire.MAX_JSON_BYTES: many long prompts
    packed in); then halves, as often as needed (the frames share the chunk's event). A lone META
    past the limit stays whole: its write is refused (wire.encoded_frame_buffers), it fails alone."""
    body = wire.encode_json({"items": headers, **extra})
    if len(body) <= wire.MAX_JSON_BYTES or len(headers) == 1:
        return [(body, start, start + len(headers))]
    half = len(headers) // 2
    return _metas_bodies(headers[:half], extra, start) + _metas_bodies(headers[half:], extra, start + half)

