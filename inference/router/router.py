"""Router core: admits requests, drives each through prefill -> allocation ->
transfer -> decode, enforces the SLOs, retries on faults. Pure state machine:
no sockets or threads (server.py feeds it events, tests feed it fakes).

Request lifecycle (queues and stages):
  submit -> queued (bounded by slo.max_queue; front = retries) -> prefill
  (on a prefill worker) -> await_decode (prefilled, KV held, no decode room
  yet) -> alloc (DecodeRequest sent) -> transfer (TransferRequest sent,
  deadline running) -> decode -> done (Result sent once; the id is kept so a
  late or duplicate worker message is ignored).
  Fast path (prealloc.py): decode blocks reserved at dispatch, the KV pushed
  when the prefill ends: prefill -> transfer, no alloc round trip after it.
Faults (faults.py): a lost worker, a failed or timed-out transfer, an engine
error: the request is released on both sides and retried with attempt+1.
"""
from __future__ import annotations

import time
from collections import deque
from typing import Callable

from inference.disagg import protocol as P
from inference.router.faults import Faults
from inference.router.job import Job
from inference.router.metrics import RouterMetrics, worker_spans
from inference.router.prealloc import Prealloc
from inference.router.policy import (SloState, WorkerState, decode_has_room, pending_allocs, pick_decode,
                                     pick_prefill)

DONE_MEMORY = 100_000  # finished request ids remembered for duplicate detection

class Router(Prealloc, Faults):
    def __init__(self, slo, send: Callable[[object, object], None], transfer_timeout_s: float = 30.0,
                 max_retries: int = 3, slo_policy: str = "defer", clock: Callable[[], float] = time.monotonic,
                 preallocate: bool = True):
        self.slo = SloState(slo.ttft_ms / 1000, slo.tpot_ms / 1000)
        self.max_queue = slo.max_queue
        self.send_fn, self.clock = send, clock
        self.transfer_timeout_s, self.max_retries, self.slo_policy = transfer_timeout_s, max_retries, slo_policy
        self.workers: dict[str, WorkerState] = {}
        self.jobs: dict[str, Job] = {}
        self.queue: deque[str] = deque()  # request ids waiting for a prefill worker
        self.await_decode: deque[str] = deque()  # prefilled, waiting for decode room
        # finished request ids, oldest first: duplicate submits inside this window are
        # refused; bounded so that a long-running router does not grow without end
        self.done: dict[str, None] = {}
        self.metrics = RouterMetrics()
        self.preallocate = preallocate  # reserve decode blocks at prefill dispatch (prealloc.py)

    # workers -------------------------------------------------------------------------
    def add_worker(self, state: WorkerState) -> None:
        self.workers[state.name] = state
        self.pump()

    def worker_lost(self, name: str) -> None:
        w = self.workers.get(name)
        if w is None or not w.alive:
            return
        w.alive = False
        self.metrics.count(f"{w.role}_lost")
        for rid in list(w.inflight):
            if rid in self.jobs:
                self._retry(self.jobs[rid], f"{name} lost")
        self.pump()

    def _send(self, name: str, msg) -> None:
        w = self.workers[name]
        if w.alive:
            self.send_fn(w.channel, msg)

    # clients ----------------------------------------------------------------------------
    def submit(self, client, msg: P.Submit) -> None:
        rid = msg.request_id
        self.metrics.count("submitted")
        if rid in self.jobs or rid in self.done:
            return self._reject_new(client, rid, "duplicate")
        if len(self.queue) >= self.max_queue:
            return self._reject_new(client, rid, "queue_full")
        job = Job(msg, client, self.clock())
        job.marks["submitted"] = job.submit_s
        prefills = [w for w in self.workers.values() if w.role == "prefill" and w.alive]
        ahead = sum(self.jobs[r].est_tokens for r in self.queue) + sum(w.queued_tokens for w in prefills)
        if self.slo.predicted_ttft_s(ahead + job.est_tokens, len(prefills)) > self.slo.ttft_s:
            self.metrics.count("slo_ttft_predicted_miss")
            if self.slo_policy == "reject":
                return self._reject_new(client, rid, "slo")
        self.jobs[rid] = job
        self.queue.append(rid)
        self.pump()

    def client_gone(self, client) -> None:
        """The client's connection closed: nobody waits for its requests. Each
        is dropped at whatever stage it is in, its prefill and decode work
        aborted and its KV freed on both sides (Release), and its id kept in
        `done` so late worker replies are recognised as stale."""
        gone = [job for job in self.jobs.values() if job.client is client]
        for job in gone:
            rid = job.submit.request_id
            if rid in self.queue:
                self.queue.remove(rid)
            self._release_all(job)
            self._unassign(job)
            del self.jobs[rid]
            self._remember_done(rid)
        if gone:
            self.metrics.count("aborted_client_gone", len(gone))
            self.pump()

    def _remember_done(self, rid: str) -> None:
        self.done[rid] = None
        if len(self.done) > DONE_MEMORY:
            del self.done[next(iter(self.done))]

    def _reject_new(self, client, rid: str, reason: str) -> None:
        self.metrics.count(f"rejected_{reason}")
        self.send_fn(client, P.Rejected(request_id=rid, reason=reason))

    def _finish(self, job: Job, msg) -> None:
        rid = job.submit.request_id
        self._unassign(job)
        self.jobs.pop(rid, None)
        self._remember_done(rid)
        if isinstance(msg, P.Rejected):
            self.metrics.count(f"rejected_{msg.reason.split(':')[0]}")
        else:
            self.metrics.count("completed")
        self.send_fn(job.client, msg)

    # dispatch ------------------------------------------------------------------------------
    def pump(self) -> None:
        """Move work forward: decode allocations first (they free prefill KV),
        then new prefills while decode can take their output within TPOT."""
        # one pass over the jobs per pump, not one per decision: only _try_decode changes it (kept up to date there)
        pending = pending_allocs(self.jobs.values())
        for rid in list(self.await_decode):
            self._try_decode(self.jobs[rid], pending)
        decodes = [w for w in self.workers.values() if w.role == "decode" and w.alive]
        while (self.queue and decodes and len(self.await_decode) <= 2 * len(decodes)
               and decode_has_room(self.workers.values(), self.slo.tpot_s, pending)):
            w = pick_prefill(list(self.workers.values()))
            if w is None:
                return
            job = self.jobs[self.queue.popleft()]
            job.stage, job.prefill, job.decode = "prefill", w.name, ""
            job.marks["prefill_sent"] = now = self.clock()
            if not w.queued_tokens:  # it was idle: its busy window (prefill rate) starts now
                w.rate_since_s, w.rate_tokens = now, 0
            w.inflight.add(job.submit.request_id)
            w.queued_tokens += job.est_tokens
            s = job.submit
            self._send(w.name, P.PrefillRequest(request_id=job.wid, prompt_token_ids=s.prompt_token_ids,
                                                sampling=s.sampling, images=s.images, image_sizes=s.image_sizes))
            self._reserve(job, pending)

    def _try_decode(self, job: Job, pending: dict[str, int]) -> None:
        """pending: pending_allocs() of the jobs; counts the allocation asked here."""
        w = pick_decode(list(self.workers.values()), job.prefilled.num_prompt_tokens, self.slo.tpot_s, pending)
        if w is None:
            return
        self.await_decode.remove(job.submit.request_id)
        job.stage, job.decode = "alloc", w.name
        pending[w.name] = pending.get(w.name, 0) + 1
        w.inflight.add(job.submit.request_id)
        p = job.prefilled
        job.marks["decode_sent"] = self.clock()
        self._send(w.name, P.DecodeRequest(request_id=job.wid, num_prompt_tokens=p.num_prompt_tokens,
                                           first_token=p.first_token, rope_delta=p.rope_delta,
                                           prompt_token_ids=p.prompt_token_ids, sampling=job.submit.sampling))

    # worker messages ------------------------------------------------------------------
    def _job_for(self, wid: str, stage: tuple[str, ...]) -> Job | None:
        rid, _, attempt = wid.rpartition("@")
        job = self.jobs.get(rid)
        if job is None or str(job.attempt) != attempt or job.stage not in stage:
            return None
        return job

    def on_worker_message(self, name: str, msg) -> None:
        w = self.workers.get(name)
        if w is None:
            return
        if isinstance(msg, P.Load):
            # prefill queued tokens stay the router's own count: it also covers requests still on the wire
            w.num_free_blocks, w.num_running, w.step_s = msg.num_free_blocks, msg.num_running, msg.step_s
        elif isinstance(msg, P.PrefillDone):
            self._on_prefilled(w, msg)
        elif isinstance(msg, P.Allocated):
            self._on_allocated(w, msg)
        elif isinstance(msg, P.TransferDone):
            self._on_transferred(w, msg)
        elif isinstance(msg, P.DecodeDone):
            self._on_decoded(w, msg)
        elif isinstance(msg, (P.PrefillFailed, P.Error)):
            job = self._job_for(msg.request_id, ("prefill", "await_decode", "alloc", "transfer", "decode"))
            if job is not None:
                if isinstance(msg, P.PrefillFailed) and not msg.retryable:
                    self._release_all(job)
                    self._finish(job, P.Rejected(request_id=job.submit.request_id, reason=f"bad_request: {msg.error}"))
                else:
                    self._note_refused_landing(name, job, msg)
                    self._retry(job, msg.error)
        self.pump()

    def _on_prefilled(self, w: WorkerState, msg: P.PrefillDone) -> None:
        job = self._job_for(msg.request_id, ("prefill",))
        if job is None:  # an attempt given up on: its KV is not wanted
            return self._send(w.name, P.Release(request_id=msg.request_id))
        w.queued_tokens = max(0, w.queued_tokens - job.est_tokens)
        job.prefilled = msg
        job.marks["prefill_done"] = now = self.clock()
        if not job.first_token_s:
            job.first_token_s = now
            self.metrics.ttft_s.append(job.first_token_s - job.submit_s)
        self.slo.observe_done(w, msg.num_prompt_tokens, now)
        if job.submit.sampling.get("max_tokens", 16) <= 1:  # prefill's token is the whole answer
            self._send(w.name, P.Release(request_id=msg.request_id))
            return self._complete(job, [msg.first_token], "length", msg.text)
        if self._prefilled_early(job, msg):
            return
        job.stage = "await_decode"
        self.await_decode.append(job.submit.request_id)

    def _on_allocated(self, w: WorkerState, msg: P.Allocated) -> None:
        w.num_free_blocks = msg.num_free_blocks
        job = self._job_for(msg.request_id, ("alloc", "prefill"))
        if job is None or (job.stage == "prefill" and job.early != "alloc"):
            if msg.ok and job is None:  # no TransferRequest was ever sent for this attempt
                self._send(w.name, P.Release(request_id=msg.request_id, transfer_started=False))
            return
        if job.stage == "prefill":
            return self._on_reserved(w, job, msg)
        job.marks["allocated"] = self.clock()
        if not self.reservation_fits(w, job, msg):
            return
        if not msg.ok:
            w.inflight.discard(job.submit.request_id)
            if msg.error.startswith("no_room"):
                job.stage, job.decode = "await_decode", ""
                return self.await_decode.append(job.submit.request_id)
            self._release_all(job)
            return self._finish(job, P.Rejected(request_id=job.submit.request_id, reason=f"too_long: {msg.error}"))
        now = self.clock()
        job.stage, job.deadline_s = "transfer", now + self.transfer_timeout_s
        job.marks["transfer_sent"] = now
        self._send(job.prefill, P.TransferRequest(request_id=job.wid, dst_address=w.transfer_address,
                                                  dst_block_ids=msg.block_ids,
                                                  dst_block_size=w.block_size if job.early else 0))

    def _on_transferred(self, w: WorkerState, msg: P.TransferDone) -> None:
        job = self._job_for(msg.request_id, ("transfer",))
        if job is None:
            return
        if not msg.ok and msg.error.startswith("dst_too_small") and job.early:
            self._drop_reservation(job, release=True)  # refused before sending: the KV is still held
            return self.await_decode.append(job.submit.request_id)
        w.inflight.discard(job.submit.request_id)
        if not msg.ok:
            return self._retry(job, f"transfer failed: {msg.error}")
        job.marks["transfer_done"] = self.clock()
        self.metrics.observe_transfer(msg.num_bytes, msg.transfer_s)
        job.stage = "decode"
        if job.decode in self.workers:
            self.workers[job.decode].num_running += 1

    def _on_decoded(self, w: WorkerState, msg: P.DecodeDone) -> None:
        w.num_free_blocks, w.step_s = msg.num_free_blocks, msg.step_s or w.step_s
        job = self._job_for(msg.request_id, ("transfer", "decode"))
        if job is not None:
            job.marks["decode_done"] = self.clock()
            self._complete(job, msg.token_ids, msg.finish_reason, msg.text, msg)

    def _complete(self, job: Job, token_ids: list[int], reason: str, text: str | None,
                  decoded: P.DecodeDone | None = None) -> None:
        now = self.clock()
        tpot = (now - job.first_token_s) / max(len(token_ids) - 1, 1)
        if len(token_ids) > 1:
            self.metrics.tpot_s.append(tpot)
        self.metrics.observe_stages(job.marks, worker_spans(job.prefilled, decoded), job.submit.request_id,
                                    len(token_ids), tpot if len(token_ids) > 1 else None,
                                    decoded.decode_steps if decoded is not None else -1)
        self._finish(job, P.Result(request_id=job.submit.request_id, token_ids=token_ids, finish_reason=reason,
                                   num_prompt_tokens=job.prefilled.num_prompt_tokens, ttft_s=job.first_token_s - job.submit_s,
                                   tpot_s=tpot, text=text, num_retries=job.num_retries))

    def tick(self) -> None:
        now = self.clock()
        for job in list(self.jobs.values()):
            if job.stage == "transfer" and now > job.deadline_s:
                self.metrics.count("transfer_timeouts")
                self._retry(job, "transfer timed out")
            elif job.stage == "queued" and self.slo_policy == "reject" and now - job.submit_s > self.slo.ttft_s:
                self.queue.remove(job.submit.request_id)
                self._finish(job, P.Rejected(request_id=job.submit.request_id, reason="slo"))
        self.pump()

    def export_metrics(self, fmt: str = "json") -> str:
        return self.metrics.export(fmt, self.workers.values(), queued=len(self.queue),
                                   await_decode=len(self.await_decode), inflight=len(self.jobs))
