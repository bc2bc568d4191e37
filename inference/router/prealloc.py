"""Pre-allocation: the router's part of the reservation fast path (a mixin
of Router; protocol.py has the message flow, inference/disagg/reservation.py
the workers' part).

At prefill dispatch a job asks the decode worker pick_decode would choose
(KV room for Job.reserve_tokens, TPOT admission counting the allocations
already pending there) for a reservation (sampling that reads the prompt
too: the prefill worker sends the expanded prompt in the TransferMeta); once Allocated, the prefill worker is given the destination
(early TransferRequest) and pushes the KV the moment its prefill ends.
States (Job.early, while Job.stage == "prefill"): "" -> "alloc"
(DecodeRequest sent) -> "dest" (TransferRequest sent: from here the blocks
may be written, so a Release says transfer_started). At PrefillDone:
- pushed, or "dest" not pushed (its TransferRequest arrived after the
  prefill: sent then as a plain one, or refused as too small): "transfer";
- "alloc" (the answer is late): "alloc", and Allocated is handled as in the
  plain flow (reservation_fits checks its size against the real prompt);
- none: "await_decode", the plain flow.
Falling back (no room, too small): the reservation is released at once
(nothing was sent into it) and the job waits in await_decode. A landed meta
the decode worker refuses (an Error: e.g. no prompt ids from a prefill
worker that predates them, for sampling that reads the prompt) retries the
request in the plain flow (Job.plain_only).
"""
from __future__ import annotations

from inference.disagg import protocol as P
from inference.router.job import Job
from inference.router.policy import WorkerState, blocks_needed, pick_decode


class Prealloc:
    def _reserve(self, job: Job, pending: dict[str, int]) -> None:
        """At dispatch: ask a decode worker for blocks while the prefill runs."""
        if not self.preallocate or job.plain_only or job.submit.sampling.get("max_tokens", 16) <= 1:
            return
        tokens = job.reserve_tokens
        w = pick_decode(list(self.workers.values()), tokens, self.slo.tpot_s, pending)
        if w is None:
            return
        job.decode, job.early = w.name, "alloc"
        pending[w.name] = pending.get(w.name, 0) + 1
        w.inflight.add(job.submit.request_id)
        # until its answer: the next choice must not count these blocks free
        w.num_free_blocks -= blocks_needed(tokens + 1, w.block_size)
        job.marks["reserve_sent"] = self.clock()
        self.metrics.count("reservations")
        self._send(w.name, P.DecodeRequest(request_id=job.wid, num_prompt_tokens=tokens, first_token=0, rope_delta=0,
                                           prompt_token_ids=[], sampling=job.submit.sampling, is_reservation=True))

    def _on_reserved(self, w: WorkerState, job: Job, msg: P.Allocated) -> None:
        """Allocated for a job still in prefill."""
        job.marks["reserved"] = self.clock()
        if not msg.ok:
            return self._drop_reservation(job, release=False)
        job.early = "dest"
        self._send(job.prefill, P.TransferRequest(request_id=job.wid, dst_address=w.transfer_address,
                                                  dst_block_ids=msg.block_ids, dst_block_size=w.block_size))

    def _prefilled_early(self, job: Job, msg: P.PrefillDone) -> bool:
        """PrefillDone of a job with a reservation (False: it has none)."""
        now = self.clock()
        if msg.pushed or job.early == "dest":
            self.metrics.count("pushed_at_prefill" if msg.pushed else "pushed_late")
            # nothing waited after the prefill for the allocation or the send order
            for mark in ("decode_sent", "allocated", "transfer_sent"):
                job.marks[mark] = now
            job.stage, job.deadline_s = "transfer", now + self.transfer_timeout_s
            return True
        if job.early == "alloc":
            job.stage = "alloc"
            job.marks["decode_sent"] = now  # the alloc span: what is left of the reservation's round trip
            return True
        return False

    def reservation_fits(self, w: WorkerState, job: Job, msg: P.Allocated) -> bool:
        """Allocated in stage alloc: may the prefilled prompt go into these blocks?
        A plain allocation always fits; a reservation too small or refused is dropped."""
        if not job.early:
            return True
        if msg.ok and blocks_needed(job.prefilled.num_prompt_tokens, w.block_size) <= len(msg.block_ids):
            return True
        self._drop_reservation(job, release=msg.ok)
        self.await_decode.append(job.submit.request_id)
        return False

    def _note_refused_landing(self, name: str, job: Job, msg) -> None:
        """An Error from a reservation's decode worker (before the retry it causes)."""
        if job.early and name == job.decode and isinstance(msg, P.Error):
            job.plain_only = True
            self.metrics.count("reservation_fallbacks")

    def _drop_reservation(self, job: Job, release: bool) -> None:
        """Back to the plain flow; release: free its blocks (no sender was ever told them)."""
        self.metrics.count("reservation_fallbacks")
        if release and job.decode in self.workers:
            self._send(job.decode, P.Release(request_id=job.wid, transfer_started=False))
        if job.decode in self.workers:
            self.workers[job.decode].inflight.discard(job.submit.request_id)
        job.decode, job.early = "", ""
        if job.stage != "prefill":
            job.stage = "await_decode"
