"""Groups of sends (a mixin of ControlSender): send_many for transports that move several transfers
in one go (`batches_sends`; cuda-ipc: one wait for the engine's stream, one event for the group).

send_many(metas) takes them shortest prompt first (a META's cost, packing and landing, grows with its
tokens, so short requests, often short outputs, are not held behind long ones), at most max_inflight at
a time: those are prepared (checks, conversion into staging when the pools differ, plan), reserved as
room allows, each reserved group moved by one `_move_many`, then its METAs written one by one as each is
built (the receiver lands the first while the next is packed). A meta that fails to prepare fails
alone; a failed move fails its group; a connection lost mid-group fails what it had not acked. Returns,
per meta in the given order, its TransferHandle or its exception. Without `batches_sends`, or for a
self-acked sender, it is send() for each.

The host class provides: config, self_acks, is_alive(), _gone(), _prepare(meta), _reserve(ready),
_send_meta(header) and _finish(seq, status, error).
"""
from __future__ import annotations

from inference.transfer.base import TransferError, TransferHandle
from inference.transfer.meta import TransferMeta, meta_header
from inference.transfer.source import PreparedTransfer


class GroupedSends:
    def send_many(self, metas: list[TransferMeta]) -> list[TransferHandle | Exception]:
        if not self.batches_sends or self.self_acks or len(metas) < 2:
            return super().send_many(metas)
        if not self.is_alive():
            return [self._gone()] * len(metas)
        out: list[TransferHandle | Exception | None] = [None] * len(metas)
        order = sorted(range(len(metas)), key=lambda i: metas[i].num_tokens)  # stable: ties keep their order
        limit = self.config.max_inflight
        while order:  # prepared max_inflight at a time: a conversion stages each one's KV on the device
            ready = []  # (meta, prep, index in metas)
            for i in order[:limit]:
                try:
                    ready.append((metas[i], self._prepare(metas[i]), i))
                except Exception as e:  # noqa: BLE001 (this meta's error, handed back)
                    out[i] = e
            order = order[limit:]
            while ready:
                try:
                    slots = self._reserve(ready)
                except TransferError as e:  # no room for lease_s, or the receiver went away: the rest fail
                    for i in [i for _, _, i in ready] + order:
                        out[i] = e
                    return out
                group, ready = list(zip(slots, ready)), ready[len(slots):]
                try:
                    extra = self._move_many([(seq, prep) for (seq, _), (_, prep, _) in group]) or {}
                except Exception as e:  # noqa: BLE001
                    extra = e
                for (seq, handle), (meta, _, i) in group:
                    try:
                        if isinstance(extra, Exception):
                            raise extra
                        self._send_meta(meta_header(seq, meta, **extra))
                        out[i] = handle
                    except Exception as e:  # noqa: BLE001
                        self._finish(seq, "failed", f"{type(e).__name__}: {e}")
                        out[i] = e
        return out

    def _move_many(self, items: list[tuple[int, PreparedTransfer]]) -> dict | None:
        """Move several transfers ((seq, prep) pairs); returns the META fields common to them all."""
        raise NotImplementedError
