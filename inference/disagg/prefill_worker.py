"""Prefill worker: vision encoder + LM prefill; holds each request's KV until the decode side has it.

Request lifecycle (queues):
  PrefillRequest -> engine waiting -> in prefill (max_tokens=1, keep_kv) ->
  held (blocks kept, lease running; PrefillDone with first token, rope delta)
  -> TransferRequest -> in transfer (KV + TransferMeta to the decode worker's
  receiver, on a sender thread) -> released: blocks freed on the receiver's
  ack (TransferDone ok), on failure (TransferDone not ok) or when the lease
  expires first. Release(request_id) from the router ends any stage early.
Pushed at once (pre-allocation): a TransferRequest for a request still in prefill is kept (its job's `destination`);
when the prefill ends, PrefillDone(pushed) is sent, then the send queued (the router hears PrefillDone
first). One too small for the prompt sends nothing: TransferDone(ok=False, "dst_too_small") after
PrefillDone, and the KV stays held. Connections, sender thread: kv_senders.py. Threads: a TransferRequest is
handled on its connection's thread (it only marks the held request and queues the send), so it never waits
behind a prefill step of the loop thread; TransferDone is sent from the transport's thread as soon as the
send ends, and only the freeing of the blocks goes through the loop. A PrefillRequest's host-side
preparation (pixels, placeholder expansion, positions: Processor.host) runs on a prep thread, overlapping
the engine's steps; every other message passes through that thread's queue too, so the loop sees them in
arrival order, and a TransferRequest never waits behind the preparation of a large page.
Per-request state: one PrefillJob per request id in `jobs` (prefill_job.py states its stages), shared by
these threads and changed under `_lock`; `_end` alone removes a job, whichever way the request ends.
"""
from __future__ import annotations

import dataclasses
import logging
import queue
import threading
import time
from dataclasses import dataclass

from inference.disagg import protocol as P
from inference.disagg.channel import Channel
from inference.disagg.kv_senders import KvSenders, close_quietly
from inference.disagg.prefill_job import PrefillJob
from inference.disagg.reservation import too_small
from inference.disagg.worker import Worker
from inference.sampling import SamplingParams
from inference.transfer import TransferConfig, TransferMeta, select_transport

log = logging.getLogger("inference.disagg.prefill")


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
    error: str = ""  # why it could not be prepared: a bad request (answered with PrefillFailed)
    exception: Exception | None = None  # any other failure, raised again on the loop thread (an Error reply)
    received_s: float = 0.0  # perf_counter when its connection read it (admission wait, in PrefillDone)

    @property
    def request_id(self) -> str:  # an Error reply for it names the request
        return self.msg.request_id


class PrefillWorker(KvSenders, Worker):
    role = "prefill"

    def __init__(self, model: str, layout, index: int = 0, **engine_kw):
        super().__init__(model, layout, index, **engine_kw)
        t = layout.transfer
        self.transfer_config = TransferConfig(transport=t.transport, fallback=t.fallback, token=self.token.decode(),
                                              lease_s=t.lease_s, max_inflight=t.max_inflight,
                                              **({} if t.tcp_streams is None else {"tcp_streams": t.tcp_streams}))
        self.transport = select_transport(config=self.transfer_config)
        self.jobs: dict[str, PrefillJob] = {}  # request id -> its state, from receipt until _end
        self._lock = threading.Lock()  # guards `jobs` (loop, connection, sender and transport threads)
        self._preps: queue.Queue = queue.Queue()  # (channel, message) for the prep thread, in arrival order
        threading.Thread(target=self._prep_loop, name="prefill-prep", daemon=True).start()
        self.senders: dict[str, object] = {}  # decode receiver address -> connected sender (sender thread only)
        self._sends: queue.Queue = queue.Queue()
        self._send_failures: dict[str, int] = {}  # decode receiver address -> consecutive failed sends
        threading.Thread(target=self._send_loop, name="kv-send", daemon=True).start()

    # messages ---------------------------------------------------------------------
    def receive(self, channel: Channel, msg) -> None:
        if isinstance(msg, P.TransferRequest):
            self._transfer(channel, msg)
        else:
            if isinstance(msg, P.PrefillRequest):  # known from now on: an early TransferRequest is kept for it
                with self._lock:  # a copy of one already here changes nothing
                    self.jobs.setdefault(msg.request_id, PrefillJob())
            self._preps.put((channel, msg, time.perf_counter()))

    def _prep_loop(self) -> None:
        """Prep thread: PrefillRequests prepared, everything in arrival order onto the inbox."""
        while True:
            channel, msg, received_s = self._preps.get()
            self.inbox.put((channel, self._prepare(msg, received_s) if isinstance(msg, P.PrefillRequest) else msg))

    def _prepare(self, msg: P.PrefillRequest, received_s: float) -> Prepared:
        try:
            request = {"prompt_token_ids": msg.prompt_token_ids, "images": to_images(msg.images, msg.image_sizes)}
            return Prepared(msg, self.engine.processor.host(request), received_s=received_s)
        except (TypeError, ValueError) as e:  # a bad image or prompt: PrefillFailed
            return Prepared(msg, error=f"{type(e).__name__}: {e}", received_s=received_s)
        except Exception as e:  # the prep thread goes on; the loop answers as for its own failures
            return Prepared(msg, exception=e, received_s=received_s)

    def handle(self, channel: Channel, msg) -> None:
        # (PrefillRequests reach the loop as Prepared and TransferRequests never: receive())
        if isinstance(msg, Prepared):
            self._prefill(channel, msg)
        elif isinstance(msg, P.Release):  # ends it at any stage but a send in flight (that send's end does)
            self._end(msg.request_id, unless_in_transfer=True)
        else:
            channel.reply_error(f"prefill worker does not take {type(msg).__name__}")

    def _prefill(self, channel: Channel, prepared: Prepared) -> None:
        msg = prepared.msg
        rid = msg.request_id
        self.remember(rid, channel)
        with self._lock:  # made by receive(), unless this copy comes after the first one ended
            job = self.jobs.setdefault(rid, PrefillJob())
        if job.is_admitted:  # duplicate delivery: the first one is being served
            return
        try:
            if prepared.exception is not None:
                raise prepared.exception
            if prepared.error:
                raise ValueError(prepared.error)
            params = SamplingParams(**msg.sampling)
            first_only = dataclasses.replace(params, max_tokens=1, return_logits=False)
            prompt = self.engine.processor.finish(prepared.prompt)  # device upload: the loop thread's part
            self.engine.add_request(rid, prompt, first_only, keep_kv=True)
        except Exception as e:
            self._end(rid)  # never admitted: an early destination kept for it goes too
            if prepared.exception is not None or not isinstance(e, (TypeError, ValueError)):
                raise  # the loop answers with an Error
            self.reply(rid, P.PrefillFailed(request_id=rid, error=f"{type(e).__name__}: {e}"))
            return
        with self._lock:
            job.sampling = msg.sampling
            job.admit_wait_s = time.perf_counter() - prepared.received_s

    def on_outputs(self, outputs: list) -> None:
        queued = self.load().queued_prefill_tokens
        for out in outputs:
            rid = out.request_id
            if out.finish_reason == "abort":
                self._end(rid)
                continue
            req, dst_ids = self.engine.scheduler.held[rid], None
            prompt_ids = list(req.prompt.token_ids)  # in PrefillDone; in the meta only when sampling reads it
            with self._lock:
                job = self.jobs[rid]  # admitted by _prefill; _end takes a job and its request out together
                job.output, job.lease_expiry_unix_s = out, time.time() + self.transfer_config.lease_s
                job.prompt_token_ids = prompt_ids if req.sampling.reads_prompt else None
                dest, job.destination = job.destination, None
                if dest is not None:  # claimed now: no Release or lease expiry can free it mid-send
                    dst_ids = job.claim(dest)
            self.reply(rid, P.PrefillDone(
                request_id=rid, num_prompt_tokens=out.num_prompt_tokens, first_token=out.first_token,
                # the router reads the prompt only for a plain-flow DecodeRequest; a pushed KV's meta has it
                rope_delta=out.rope_delta, prompt_token_ids=[] if dst_ids is not None else prompt_ids,
                prefill_s=out.ttft_s, queued_prefill_tokens=queued, text=out.text, admit_wait_s=job.admit_wait_s,
                pushed=dst_ids is not None))
            if dst_ids is not None:
                self._queue_send(rid, job, dest.dst_address, dst_ids, to_reservation=True)
            elif dest is not None:
                self.reply(rid, P.TransferDone(request_id=rid, ok=False, error=too_small(rid, dest)))

    # transfers ------------------------------------------------------------------
    def _transfer(self, channel: Channel, msg: P.TransferRequest) -> None:
        """On the connection's thread (see the module doc): claim the held KV, queue its send."""
        rid = msg.request_id
        self.remember(rid, channel)
        dst_ids, error = None, ""
        with self._lock:
            job = self.jobs.get(rid)
            if job is not None and not job.is_held and msg.dst_block_size > 0:
                job.destination = msg  # still prefilling: pushed when its KV is there (on_outputs)
                return
            if job is None or not job.is_held:
                error = f"{rid}: no KV held (lease expired or released)"
            elif job.in_transfer:
                error = f"{rid}: already in transfer"
            else:
                dst_ids = job.claim(msg)
                if dst_ids is None:
                    error = too_small(rid, msg)
        if error:
            self.reply(rid, P.TransferDone(request_id=rid, ok=False, error=error))
        else:
            self._queue_send(rid, job, msg.dst_address, dst_ids, to_reservation=msg.dst_block_size > 0)

    def _queue_send(self, rid: str, job: PrefillJob, address: str, dst_ids, to_reservation: bool) -> None:
        out = job.output
        meta = TransferMeta(request_id=rid, src_block_ids=out.block_ids, dst_block_ids=dst_ids,
                            num_tokens=out.num_computed_tokens, first_token_id=out.first_token,
                            mrope_position_delta=out.rope_delta, sampling_state=job.sampling,
                            lease_expiry_unix_s=job.lease_expiry_unix_s,
                            prompt_token_ids=job.prompt_token_ids if to_reservation else None)
        meta.hops["queued"] = time.time()
        self._sends.put((address, meta))

    def _send_started(self, metas: list[TransferMeta], sender) -> None:
        """On the sender thread, as the sends of `metas` (one group) begin: their send -> ack time
        starts, and the bytes each moves (destination blocks of the receiver's layout) are noted for
        TransferDone. One clock read and one lock for the group, not one per request."""
        start_s, peer = time.perf_counter(), sender.peer_spec
        block_bytes = peer.block_bytes if peer is not None else 0
        with self._lock:
            for meta in metas:
                job = self.jobs.get(meta.request_id)
                if job is not None:
                    job.send_start_s = start_s
                    job.send_bytes = len(meta.dst_block_ids) * block_bytes

    def _on_release(self, meta: TransferMeta, status: str) -> None:
        """On a transport thread: the send ended (acked or failed). The router
        hears it now; the blocks are freed by the loop thread."""
        rid = meta.request_id
        end_s = time.perf_counter()
        with self._lock:
            job = self.jobs.get(rid)
            first = job is not None and not job.reported
            if first:
                job.reported = True
        try:
            if first:
                ok = status == "acked"
                # send -> ack, on the transfer's own threads (0 when the send failed before it began)
                took = end_s - job.send_start_s if job.send_start_s is not None else 0.0
                self.reply(rid, P.TransferDone(request_id=rid, ok=ok, error="" if ok else status,
                                               num_bytes=job.send_bytes, transfer_s=took))
        finally:  # released once (transfer/base.py): the blocks go back even if the reply failed
            self.inbox.put((None, ("released", meta, status)))  # the loop frees the blocks

    def _dispatch(self, channel, msg) -> None:
        if channel is None and isinstance(msg, tuple):
            self._end(msg[1].request_id)  # its send ended: the blocks may be reused
        else:
            super()._dispatch(channel, msg)

    # ends (loop thread) -------------------------------------------------------------
    def _end(self, rid: str, unless_in_transfer: bool = False) -> bool:
        """The one place a request's job goes, whichever way it ends (ack or failed send, lease expiry,
        Release, abort, not admitted); the engine drops the request (aborted if still prefilling) and
        frees the blocks it holds. unless_in_transfer: a job whose send is in flight stays (False), as
        freeing now would let the sender read reused blocks; the send's end comes back here."""
        with self._lock:
            job = self.jobs.get(rid)
            if unless_in_transfer and job is not None and job.in_transfer:
                return False
            self.jobs.pop(rid, None)  # a TransferRequest from here on finds nothing to send
        held = self.engine.scheduler.held
        if rid not in held:  # still in the engine (a Release while prefilling): aborted, it lands in `held`
            self.engine.abort(rid)  # (skipped for a held one, the usual end: abort scans every running request)
        if rid in held:
            self.engine.release(rid)
        return True

    def poll(self) -> None:
        now = time.time()
        with self._lock:
            expired = [rid for rid, job in self.jobs.items()
                       if job.is_held and not job.in_transfer and now > job.lease_expiry_unix_s]
        for rid in expired:  # (one claimed by a send since is kept: the send's end frees it)
            if self._end(rid, unless_in_transfer=True):
                log.info("prefill %d: lease of %s expired, freeing its blocks", self.index, rid)

    def load(self) -> P.Load:
        s = self.engine.scheduler
        queued = sum(r.num_tokens - r.num_computed_tokens for r in list(s.waiting) + s.running)
        return P.Load(queued_prefill_tokens=queued, num_free_blocks=self.engine.block_manager.num_free_blocks,
                      num_running=len(s.running) + len(s.waiting), step_s=self._step_s)

    def close(self) -> None:
        super().close()
        for sender in list(self.senders.values()):
            close_quietly(sender)
