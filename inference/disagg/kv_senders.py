"""The prefill worker's KV senders (a mixin of PrefillWorker): one sender
thread takes queued sends (decode receiver address, TransferMeta) in order
and pushes each through a connected transport sender.

Connections: one sender per decode receiver address, kept and reused while
its link is up. A send that fails on the request alone (bad block ids) keeps
the connection; a broken link, an error mid-frame or a second failure in a
row closes it (its pending transfers fail) and the next send reconnects; a
sender whose connect fails is closed at once.
The KV is sent in the decode worker's layout: the transfer engine converts
dtype and block size when the two pools differ.
Streams (CUDA): the sender thread runs on its own stream (send_stream). A
held request's KV is complete before the engine hands out its output (the
step's sampled token is read on the host only after a synchronize on an event
recorded after all of that step's work), so the copy needs no device-side
wait on the engine's stream; on the engine's stream it would queue behind
every prefill step launched since, adding that time to TTFT and, as the
router counts it, to the first decode token's TPOT.

Groups: the sends that queued up while the thread was busy (a prefill step
ends many requests at once) go to a transport with `batches_sends` as one
send_many per address (cuda-ipc: in chunks of up to 16, each one stream wait,
one event, one METAS frame, sender_groups.py; shm: in chunks copied back to back,
one bell each, shm_groups.py; shm through staging sends one at a time inside its
group) instead of a round of Python and
driver calls per request (before, a request queued behind the rest of its step
waited up to 18 ms: kv_queue p99, cuda-ipc, one H200, session 9). Whether
sends group is the transport's (its sender class), so an address not yet
connected groups too, and a failed connect fails its whole group. A group's
results are counted as lone sends' would be, in queue order, once the whole
group has gone out: a close they cause also fails the group's sends still
unacked.
The host class provides: engine (its kv_pool), transport, transfer_config,
index, senders (address -> sender), _sends (queue), _send_failures,
_send_started(metas, sender), called as a group's sends begin, and _on_release(meta,
status), which every send ends in.
"""
from __future__ import annotations

import collections
import contextlib
import logging
import queue

from inference.transfer import TransferError

log = logging.getLogger("inference.disagg.prefill")

MAX_SEND_FAILURES = 2  # consecutive failed sends on one connection before it is replaced
MAX_BACKLOG = 256  # queued sends taken off the queue at a time (groups form from them)


class KvSenders:
    def _send_loop(self) -> None:
        """Sender thread: moves KV so the engine loop never waits on a copy."""
        with send_stream(self.engine.kv_pool):
            self._send_forever()

    def _send_forever(self) -> None:
        backlog: collections.deque = collections.deque()  # (address, meta) taken off _sends, in order
        while True:
            if not backlog:
                backlog.append(self._sends.get())
            while len(backlog) < MAX_BACKLOG:  # what piled up while the last group went out
                try:
                    backlog.append(self._sends.get_nowait())
                except queue.Empty:
                    break
            address, meta = backlog.popleft()
            group = [meta]
            # the transport's class says whether it moves groups: an address not connected yet
            # (its first page's sends) groups as well as a connected one
            if self.transport.sender_cls.batches_sends:  # the sends to this address queued next to it
                while backlog and backlog[0][0] == address:
                    group.append(backlog.popleft()[1])
            self._send_group(address, group)

    def _send_group(self, address: str, group: list) -> None:
        """Send `group` (metas for one address, in order) through one connection: each meta ends in
        _on_release, a failed one at once, here (a sender never releases a send that failed: base.py)."""
        try:
            sender = self._sender_for(address)
        except Exception as e:  # no connection: none of them can go
            self._drop_sender(address, None)
            for meta in group:
                self._on_release(meta, f"failed: {type(e).__name__}: {e}")
            return
        try:
            self._send_started(group, sender)
            results = sender.send_many(group)
        except Exception as e:  # outside any one meta's send: all fail, the thread must live on
            results = [e] * len(group)
        for meta, e in zip(group, results):
            if not isinstance(e, Exception):  # its handle: sent
                self._send_failures.pop(address, None)
                continue
            # lost receiver, bad ids: the request fails, the worker goes on
            if self._keep_after_failure(address, sender, e):
                log.info("prefill %d: send of %s failed, connection kept: %s", self.index, meta.request_id, e)
            else:
                self._drop_sender(address, sender)
            self._on_release(meta, f"failed: {type(e).__name__}: {e}")

    def _sender_for(self, address: str):
        """The connected sender to `address`: reused while its link is up,
        else a new one (a half-connected one is closed, never kept)."""
        sender = self.senders.get(address)
        if sender is not None and not link_alive(sender):
            log.info("prefill %d: connection to %s is down, reconnecting", self.index, address)
            self._drop_sender(address, sender)
            sender = None
        if sender is None:
            sender = self.transport.sender_cls(self.engine.kv_pool, self.transfer_config, self._on_release)
            try:
                sender.connect(address)
            except BaseException:
                close_quietly(sender)
                raise
            self.senders[address] = sender
        return sender

    def _keep_after_failure(self, address: str, sender, error: Exception) -> bool:
        """A TransferError or ValueError on a live link is about the request
        (bad block ids, conversion): nothing was written and the connection
        stays usable. Anything else (OSError mid-frame, a broken link), or a
        second failure in a row, means the byte stream can no longer be
        trusted: the sender is closed."""
        failures = self._send_failures[address] = self._send_failures.get(address, 0) + 1
        return (isinstance(error, (TransferError, ValueError)) and failures < MAX_SEND_FAILURES
                and link_alive(sender))

    def _drop_sender(self, address: str, sender) -> None:
        self._send_failures.pop(address, None)
        if sender is None:
            return
        if self.senders.get(address) is sender:
            del self.senders[address]
        close_quietly(sender)  # its pending transfers fail through on_release


def send_stream(pool):
    """Context that makes a CUDA stream of the pool's device, used by nothing
    else, current for the calling (sender) thread; nothing off CUDA. Work the
    transfer queues there (conversion, copies) then never waits for the
    engine's launched steps: see the module docstring for why that is safe."""
    if pool.device.type != "cuda":
        return contextlib.nullcontext()
    import torch

    from inference.streams import side_stream

    return torch.cuda.stream(side_stream(pool.device, "kv-send"))  # one per device: a pool stream made per
    # connection would come back as another purpose's (inference/streams.py)


def link_alive(sender) -> bool:
    """False once a sender is closed or its ack readers have stopped (the
    receiver went away). Senders without is_alive() (test doubles) count as alive."""
    is_alive = getattr(sender, "is_alive", None)
    return is_alive is None or is_alive()


def close_quietly(sender) -> None:
    try:
        sender.close()
    except Exception as e:  # closing a broken link may fail again; it is gone either way
        log.info("closing a transfer sender failed: %s", e)
