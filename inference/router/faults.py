"""Router faults (a mixin of Router): releasing a request's blocks on both
sides, unassigning it, retrying it.

A lost worker, a failed or timed-out transfer, an engine error: the
request's blocks are released on both sides and it goes back to the front of
the queue with attempt+1 (workers see "<id>@<attempt>", so replies of an old
attempt are recognised and dropped). After max_retries it is rejected.
Release says transfer_started once a prefill worker may have been told the
destination (a TransferRequest, early or not): the decode side then
quarantines the blocks until the lease ends instead of freeing them.
"""
from __future__ import annotations

from inference.disagg import protocol as P
from inference.router.job import Job


class Faults:
    def _unassign(self, job: Job) -> None:
        rid = job.submit.request_id
        for name in (job.prefill, job.decode):
            if name in self.workers:
                self.workers[name].inflight.discard(rid)
        if job.stage == "prefill" and job.prefill in self.workers:
            w = self.workers[job.prefill]
            w.queued_tokens = max(0, w.queued_tokens - job.est_tokens)
        if rid in self.await_decode:
            self.await_decode.remove(rid)

    def _release_all(self, job: Job) -> None:
        # before the TransferRequest no KV can be on its way: decode frees its blocks at once
        started = job.stage in ("transfer", "decode") or job.early == "dest"
        for name in (job.prefill, job.decode):
            if name in self.workers:
                self._send(name, P.Release(request_id=job.wid, transfer_started=started))

    def _retry(self, job: Job, why: str) -> None:
        self._release_all(job)
        self._unassign(job)
        job.num_retries += 1
        self.metrics.count("retries")
        if job.num_retries > self.max_retries:
            return self._finish(job, P.Rejected(request_id=job.submit.request_id, reason=f"failed: {why}"))
        job.attempt += 1
        job.stage, job.prefill, job.decode, job.prefilled, job.early = "queued", "", "", None, ""
        self.queue.appendleft(job.submit.request_id)

