"""Decode worker: pre-allocates destination blocks, receives KV + metadata,
then decodes with continuous batching.

Request lifecycle (queues):
  DecodeRequest -> prealloc (engine.add_prefilled_request: blocks reserved,
  Allocated{block_ids} to the router) -> transfer (the prefill worker writes
  the KV into those blocks through this worker's KV receiver) -> the
  TransferMeta lands and is checked against the request (first token, rope
  delta, token count) -> running (engine.kv_ready: continuous batching with
  every other request) -> DecodeDone to the router, blocks freed.
A reservation (DecodeRequest.is_reservation, sent while the prefill runs)
allocates for an upper bound with no token known yet; its meta is checked
against the reservation (sampling, length, written blocks, the prompt ids
when the sampling reads the prompt) and gives the first token, rope delta
and prompt; blocks past its length are freed (reservation.py).
Landing: a thread of its own blocks on the KV receiver and puts each landed
TransferMeta on the inbox, so an idle loop wakes at once (and a receiver that
acks from recv(), like shm's, acks while a step runs); the loop thread checks
it and starts decoding before its next step.
Release(request_id) aborts a running request, frees at once the blocks of
one whose transfer was never requested, or, while its KV may be on
the way, quarantines its blocks until the lease has run out, so a late write
can never land in blocks already given to another request.
"""
from __future__ import annotations

import logging
import threading
import time

from inference.disagg import protocol as P
from inference.disagg import reservation
from inference.disagg.channel import Channel
from inference.disagg.worker import Worker
from inference.sampling import SamplingParams
from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport
from inference.transfer.meta import hop_spans

log = logging.getLogger("inference.disagg.decode")


def adopt_pool(engine, pool) -> None:
    """Make `pool` (same shape and dtype) the engine's KV pool, so a transport
    that wants its own memory (a shm segment) receives with no staging copy."""
    runner = engine.runner
    assert pool.shape == runner.kv_pool.shape and pool.dtype == runner.kv_pool.dtype
    runner.kv_pool = pool
    for layer, attn in enumerate(runner.model.attention_layers()):
        attn.k_cache, attn.v_cache = pool[:, layer, 0], pool[:, layer, 1]


class DecodeWorker(Worker):
    role = "decode"

    def __init__(self, model: str, layout, index: int = 0, **engine_kw):
        super().__init__(model, layout, index, **engine_kw)
        t = layout.transfer
        host = self.spec.hosts[index % len(self.spec.hosts)]
        config = TransferConfig(transport=t.transport, fallback=t.fallback, host=host, token=self.token.decode(),
                                lease_s=t.lease_s, max_inflight=t.max_inflight)
        self.lease_s = t.lease_s
        transport = select_transport(config=config)
        if self.engine.runner.graphs is None and self.engine.kv_pool.device.type == "cpu":
            spec = PoolSpec.of_pool(self.engine.kv_pool)
            adopt_pool(self.engine, transport.receiver_cls.allocate_pool(spec, self.spec.device))
        self.receiver = transport.receiver_cls(self.engine.kv_pool, config)
        self.transfer_address = self.receiver.start()
        self.expected: dict[str, P.DecodeRequest] = {}  # awaiting KV: what the meta must say
        self.quarantine: dict[str, float] = {}  # released while KV in flight -> unix time to free at
        # request id -> perf_counter at Allocated sent, then at KV landed (stage spans in DecodeDone)
        self.allocated_at: dict[str, float] = {}
        self.landed_at: dict[str, tuple[float, int]] = {}  # request id -> (perf_counter, step number)
        self.hops: dict[str, dict] = {}  # request id -> its KV's hop spans (meta.hop_spans), until DecodeDone
        threading.Thread(target=self._land_loop, name="kv-land", daemon=True).start()

    def hello(self) -> P.Hello:
        msg = super().hello()
        msg.transfer_address = self.transfer_address
        return msg

    def handle(self, channel: Channel, msg) -> None:
        if isinstance(msg, P.DecodeRequest):
            self._allocate(channel, msg)
        elif isinstance(msg, P.Release):
            self._release(msg.request_id, msg.transfer_started)
        else:
            channel.reply_error(f"decode worker does not take {type(msg).__name__}")

    def _allocate(self, channel: Channel, msg: P.DecodeRequest) -> None:
        rid = msg.request_id
        self.remember(rid, channel)
        if rid in self.expected:  # duplicate: answer with the same blocks
            req = self.engine.awaiting_kv[rid]
            channel.send(P.Allocated(request_id=rid, ok=True, block_ids=req.block_ids,
                                     num_free_blocks=self.engine.block_manager.num_free_blocks))
            return
        try:
            params = SamplingParams(**msg.sampling)
            if msg.is_reservation:
                # blocks for up to num_prompt_tokens of KV; first token, delta and prompt come at landing
                ids = self.engine.add_prefilled_request(rid, msg.num_prompt_tokens, 0, 0, params)
            else:
                ids = self.engine.add_prefilled_request(rid, msg.num_prompt_tokens, msg.first_token, msg.rope_delta,
                                                        params, msg.prompt_token_ids)
        except (TypeError, ValueError, AssertionError) as e:  # never fits this pool / bad fields
            reply = P.Allocated(request_id=rid, ok=False, error=f"too_long: {e}")
        except RuntimeError as e:  # no room now
            reply = P.Allocated(request_id=rid, ok=False, error=f"no_room: {e}")
        else:
            self.expected[rid] = msg
            if not msg.is_reservation:  # a reservation's wait holds the prefill: no KV-wait span for it
                self.allocated_at[rid] = time.perf_counter()
            reply = P.Allocated(request_id=rid, ok=True, block_ids=ids)
        reply.num_free_blocks = self.engine.block_manager.num_free_blocks
        channel.send(reply)

    def _drop_awaiting(self, rid: str) -> None:
        req = self.engine.awaiting_kv.pop(rid, None)
        self.expected.pop(rid, None)
        self._forget(rid)
        if req is not None:
            self.engine.block_manager.free(req.block_ids)

    def _forget(self, rid: str) -> tuple:
        """Every per-request span of `rid` (allocated, landed, hops), removed, whichever way it ends."""
        return tuple(spans.pop(rid, None) for spans in (self.allocated_at, self.landed_at, self.hops))

    def _release(self, rid: str, transfer_started: bool = True) -> None:
        if rid in self.engine.awaiting_kv and not transfer_started:
            self._drop_awaiting(rid)  # no sender was ever told these blocks: free now
        elif rid in self.engine.awaiting_kv:
            self.quarantine[rid] = time.time() + self.lease_s
        else:
            self.engine.abort(rid)  # its output is never handed out: what on_outputs would pop goes now
            self._forget(rid)

    def _landed(self, meta: TransferMeta) -> None:
        rid = meta.request_id
        if rid in self.quarantine or rid not in self.expected:
            self.quarantine.pop(rid, None)
            self._drop_awaiting(rid)  # stale or released: its blocks may go now
            return
        want = self.expected.pop(rid)
        held = self.engine.awaiting_kv[rid] if want.is_reservation else None  # its placeholder request
        if want.is_reservation:
            why = reservation.landing_error(held.block_ids, meta, want.sampling, held.sampling.reads_prompt,
                                            want.num_prompt_tokens, self.engine.block_manager.block_size,
                                            self.engine.model_config.vocab_size)
        else:
            got = (meta.num_tokens, meta.first_token_id, meta.mrope_position_delta, meta.sampling_state)
            why = "" if got == (want.num_prompt_tokens, want.first_token, want.rope_delta, want.sampling) else f"{got[:3]}"
        if why:
            log.warning("decode %d: metadata of %s does not match its request: %s", self.index, rid, why)
            self._drop_awaiting(rid)
            self.reply(rid, P.Error(error="transfer metadata does not match the decode request", request_id=rid))
            return
        if want.is_reservation:  # the placeholder becomes the request the meta describes (checked above)
            self.engine.adopt_reservation(rid, meta.num_tokens, meta.first_token_id, meta.mrope_position_delta,
                                          held.sampling, meta.prompt_token_ids)
        self.landed_at[rid] = (time.perf_counter(), self.steps.count)
        self.hops[rid] = hop_spans({**meta.hops, "dispatched": time.time()})
        self.on_outputs(self.engine.kv_ready(rid))

    def _land_loop(self) -> None:
        """Landing thread: the receiver's metas onto the inbox, in arrival order."""
        while not self._stop.is_set():
            try:
                meta = self.receiver.recv(timeout_s=0.1)  # bounded: stop() is seen within 0.1 s
            except Exception as e:  # a closed receiver at shutdown; anything else is logged and retried
                if self._stop.is_set():
                    return
                log.warning("decode %d: KV receiver failed: %s", self.index, e)
                self._stop.wait(0.1)
                continue
            if meta is not None:
                self.inbox.put((None, meta))

    def _dispatch(self, channel, msg) -> None:
        if channel is None and isinstance(msg, TransferMeta):
            self._landed(msg)
        else:
            super()._dispatch(channel, msg)

    def poll(self) -> None:
        now = time.time()
        for rid, until in list(self.quarantine.items()):
            if now > until:
                del self.quarantine[rid]
                self._drop_awaiting(rid)

    def on_outputs(self, outputs: list) -> None:
        now = time.perf_counter()
        for out in outputs:
            allocated, landed, hops = self._forget(out.request_id)
            if out.finish_reason == "abort":
                continue  # released by the router: nobody waits for it
            done = P.DecodeDone(request_id=out.request_id, token_ids=out.token_ids, finish_reason=out.finish_reason,
                                text=out.text, num_free_blocks=self.engine.block_manager.num_free_blocks,
                                step_s=self._step_s, kv_hops_s=hops or {})
            if landed is not None:
                landed_s, landed_step = landed
                done.decode_s = now - landed_s
                done.decode_steps, done.max_step_s = self.steps.since(landed_step)
                if allocated is not None:
                    done.kv_wait_s = landed_s - allocated
            self.reply(out.request_id, done)

    def load(self) -> P.Load:
        return P.Load(num_free_blocks=self.engine.block_manager.num_free_blocks,
                      num_running=len(self.engine.scheduler.running), step_s=self._step_s)

    def close(self) -> None:
        self._stop.set()  # ends the landing thread too
        super().close()
        self.receiver.close()
