"""Prefill worker: vision encoder + LM prefill; holds each request's KV until
the decode side has it.

Request lifecycle (queues):
  PrefillRequest -> engine waiting -> in prefill (max_tokens=1, keep_kv) ->
  held (blocks kept, lease running; PrefillDone with first token, rope delta)
  -> TransferRequest -> in transfer (KV + TransferMeta to the decode worker's
  receiver, on a sender thread) -> released: blocks freed on the receiver's
  ack (TransferDone ok), on failure (TransferDone not ok) or when the lease
  expires first. Release(request_id) from the router ends any stage early.
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
Threads: a TransferRequest is handled on its connection's thread (it only
marks the held request and queues the send), so it never waits behind a
prefill step of the loop thread; TransferDone is sent from the transport's
thread as soon as the send ends, and only the freeing of the blocks goes
through the loop. A PrefillRequest's host-side preparation (pixels,
placeholder expansion, positions: Processor.host) also runs on the
connection's thread, overlapping the engine's steps. `held` is shared by
these threads: read and changed under `_lock`.
"""
from __future__ import annotations

import contextlib
import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass

from inference.disagg import protocol as P
from inference.disagg.channel import Channel
from inference.disagg.worker import Worker
from inference.sampling import SamplingParams
from inference.transfer import TransferConfig, TransferError, TransferMeta, select_transport

log = logging.getLogger("inference.disagg.prefill")

MAX_SEND_FAILURES = 2  # consecutive failed sends on one connection before it is replaced


def to_images(raw: list[bytes], sizes: list[list[int]]) -> list:
    from PIL import Image

    if len(raw) != len(sizes) or any(len(s) != 2 for s in sizes):
        raise ValueError(f"{len(raw)} images but {len(sizes)} [width, height] sizes")
    return [Image.frombytes("RGB", (w, h), data) for data, (w, h) in zip(raw, sizes)]


@dataclass
class Prepared:
    """A PrefillRequest with its host-side prompt, made on the connection's thread."""
    msg: P.PrefillRequest
    prompt: object = None  # Processor.host() result (a HostPrompt)
    error: str = ""  # why it could not be prepared (answered with PrefillFailed)


@dataclass
class Held:
    output: object  # the engine's RequestOutput (block_ids, first token, rope delta)
    sampling: dict  # the request's SamplingParams fields (travel in the TransferMeta)
    lease_expiry_unix_s: float  # blocks are freed after this unless acked earlier
    in_transfer: bool = False  # a send is in flight; the sender owns the lease then
    address: str = ""  # decode receiver it is sent to
    reported: bool = False  # TransferDone sent (a transport may report one send twice)


class PrefillWorker(Worker):
    role = "prefill"

    def __init__(self, model: str, layout, index: int = 0, **engine_kw):
        super().__init__(model, layout, index, **engine_kw)
        t = layout.transfer
        self.transfer_config = TransferConfig(transport=t.transport, fallback=t.fallback, token=self.token.decode(),
                                              lease_s=t.lease_s, max_inflight=t.max_inflight,
                                              **({} if t.tcp_streams is None else {"tcp_streams": t.tcp_streams}))
        self.transport = select_transport(config=self.transfer_config)
        self.held: dict[str, Held] = {}
        self._lock = threading.Lock()  # guards `held` (loop, connection and transport threads)
        self._prepare_lock = threading.Lock()  # Processor.host memo: one connection thread at a time
        self.senders: dict[str, object] = {}  # decode receiver address -> connected sender (sender thread only)
        self.sampling: dict[str, dict] = {}  # request id -> sampling fields, until held
        self._sends: queue.Queue = queue.Queue()
        self._send_start_s: dict[str, float] = {}  # request id -> perf_counter when its send began
        self._send_failures: dict[str, int] = {}  # decode receiver address -> consecutive failed sends
        threading.Thread(target=self._send_loop, name="kv-send", daemon=True).start()

    # messages ---------------------------------------------------------------------
    def receive(self, channel: Channel, msg) -> None:
        if isinstance(msg, P.TransferRequest):
            self._transfer(channel, msg)
        elif isinstance(msg, P.PrefillRequest):
            self.inbox.put((channel, self._prepare(msg)))
        else:
            super().receive(channel, msg)

    def _prepare(self, msg: P.PrefillRequest) -> Prepared:
        try:
            request = {"prompt_token_ids": msg.prompt_token_ids, "images": to_images(msg.images, msg.image_sizes)}
            with self._prepare_lock:
                return Prepared(msg, self.engine.processor.host(request))
        except (TypeError, ValueError) as e:
            return Prepared(msg, error=f"{type(e).__name__}: {e}")

    def handle(self, channel: Channel, msg) -> None:
        if isinstance(msg, P.PrefillRequest):
            self._prefill(channel, self._prepare(msg))
        elif isinstance(msg, Prepared):
            self._prefill(channel, msg)
        elif isinstance(msg, P.TransferRequest):
            self._transfer(channel, msg)
        elif isinstance(msg, P.Release):
            self._release(msg.request_id)
        else:
            channel.reply_error(f"prefill worker does not take {type(msg).__name__}")

    def _prefill(self, channel: Channel, prepared: Prepared) -> None:
        msg = prepared.msg
        rid = msg.request_id
        self.owner[rid] = channel
        if rid in self.held or rid in self.sampling:
            return  # duplicate delivery: the first one is being served
        try:
            if prepared.error:
                raise ValueError(prepared.error)
            params = SamplingParams(**msg.sampling)
            first_only = dataclasses.replace(params, max_tokens=1, return_logits=False)
            prompt = self.engine.processor.finish(prepared.prompt)  # device upload: the loop thread's part
            self.engine.add_request(rid, prompt, first_only, keep_kv=True)
        except (TypeError, ValueError) as e:
            self.reply(rid, P.PrefillFailed(request_id=rid, error=f"{type(e).__name__}: {e}"))
            return
        self.sampling[rid] = msg.sampling

    def on_outputs(self, outputs: list) -> None:
        queued = self.load().queued_prefill_tokens
        for out in outputs:
            rid = out.request_id
            sampling = self.sampling.pop(rid, {})
            if out.finish_reason == "abort":
                self._free(rid)
                continue
            held = Held(out, sampling, time.time() + self.transfer_config.lease_s)
            with self._lock:
                self.held[rid] = held
            req = self.engine.scheduler.held[rid]
            self.reply(rid, P.PrefillDone(
                request_id=rid, num_prompt_tokens=out.num_prompt_tokens, first_token=out.first_token,
                rope_delta=out.rope_delta, prompt_token_ids=list(req.prompt.token_ids),
                prefill_s=out.ttft_s, queued_prefill_tokens=queued, text=out.text))

    # transfers ------------------------------------------------------------------
    def _transfer(self, channel: Channel, msg: P.TransferRequest) -> None:
        """On the connection's thread (see the module doc): claim the held KV, queue its send."""
        rid = msg.request_id
        self.owner[rid] = channel
        with self._lock:
            held = self.held.get(rid)
            claimed = held is not None and not held.in_transfer
            if claimed:
                held.in_transfer, held.address = True, msg.dst_address
        if not claimed:
            why = "already in transfer" if held else "no KV held (lease expired or released)"
            self.reply(rid, P.TransferDone(request_id=rid, ok=False, error=f"{rid}: {why}"))
            return
        out = held.output
        meta = TransferMeta(request_id=rid, src_block_ids=out.block_ids, dst_block_ids=msg.dst_block_ids,
                            num_tokens=out.num_computed_tokens, first_token_id=out.first_token,
                            mrope_position_delta=out.rope_delta, sampling_state=held.sampling,
                            lease_expiry_unix_s=held.lease_expiry_unix_s)
        self._sends.put((msg.dst_address, meta))

    def _send_loop(self) -> None:
        """Sender thread: moves KV so the engine loop never waits on a copy."""
        with send_stream(self.engine.kv_pool):
            self._send_forever()

    def _send_forever(self) -> None:
        while True:
            address, meta = self._sends.get()
            sender = None
            try:
                sender = self._sender_for(address)
                self._send_start_s[meta.request_id] = time.perf_counter()
                sender.send(meta)
                self._send_failures.pop(address, None)
            except Exception as e:  # lost receiver, bad ids: the request fails, the worker goes on
                if sender is not None and self._keep_after_failure(address, sender, e):
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

    def _on_release(self, meta: TransferMeta, status: str) -> None:
        """On a transport thread: the send ended (acked or failed). The router
        hears it now; the blocks are freed by the loop thread."""
        rid = meta.request_id
        start = self._send_start_s.pop(rid, None)
        took = time.perf_counter() - start if start is not None else 0.0  # send -> ack, on the transfer's own threads
        with self._lock:
            held = self.held.get(rid)
            first = held is not None and not held.reported
            if first:
                held.reported = True
        if first:
            ok = status == "acked"
            sender = self.senders.get(held.address)
            peer = getattr(sender, "peer_spec", None) or getattr(getattr(sender, "_peer", None), "spec", None)
            num_bytes = len(meta.dst_block_ids) * peer.block_bytes if peer is not None else 0
            self.reply(rid, P.TransferDone(request_id=rid, ok=ok, error="" if ok else status, num_bytes=num_bytes,
                                           transfer_s=took))
        self.inbox.put((None, ("released", meta, status, took)))  # the loop frees the blocks

    def _dispatch(self, channel, msg) -> None:
        if channel is None and isinstance(msg, tuple):
            self._free(msg[1].request_id)  # its send ended: the blocks may be reused
        else:
            super()._dispatch(channel, msg)

    # blocks (loop thread) ---------------------------------------------------------
    def _free(self, rid: str) -> None:
        with self._lock:
            self.held.pop(rid, None)
        if rid in self.engine.scheduler.held:
            self.engine.release(rid)

    def _release(self, rid: str) -> None:
        with self._lock:
            held = self.held.get(rid)
            if held is not None and held.in_transfer:
                return  # the sender finishes or fails it; freeing now would let it read reused blocks
            self.held.pop(rid, None)  # a TransferRequest arriving from here on finds nothing to send
        self.sampling.pop(rid, None)
        self.engine.abort(rid)
        self._free(rid)

    def poll(self) -> None:
        now = time.time()
        with self._lock:
            expired = [rid for rid, held in self.held.items()
                       if not held.in_transfer and now > held.lease_expiry_unix_s]
            for rid in expired:
                del self.held[rid]  # gone before a TransferRequest could claim it
        for rid in expired:
            log.info("prefill %d: lease of %s expired, freeing its blocks", self.index, rid)
            self._free(rid)

    def load(self) -> P.Load:
        s = self.engine.scheduler
        queued = sum(r.num_tokens - r.num_computed_tokens for r in list(s.waiting) + s.running)
        return P.Load(queued_prefill_tokens=queued, num_free_blocks=self.engine.block_manager.num_free_blocks,
                      num_running=len(s.running) + len(s.waiting), step_s=self._step_s)

    def close(self) -> None:
        super().close()
        for sender in list(self.senders.values()):
            close_quietly(sender)


def send_stream(pool):
    """Context that makes a CUDA stream of the pool's device, used by nothing
    else, current for the calling (sender) thread; nothing off CUDA. Work the
    transfer queues there (conversion, copies) then never waits for the
    engine's launched steps: see the module docstring for why that is safe."""
    if pool.device.type != "cuda":
        return contextlib.nullcontext()
    import torch

    return torch.cuda.stream(torch.cuda.Stream(device=pool.device))


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
