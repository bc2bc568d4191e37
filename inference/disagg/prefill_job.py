"""One request's state on the prefill worker: PrefillJob (PrefillWorker.jobs holds one per request id)."""
from __future__ import annotations

from dataclasses import dataclass

from inference.disagg import protocol as P
from inference.disagg.reservation import fit_destination


@dataclass
class PrefillJob:
    """One prefill request from its receipt until its blocks are freed. Stages, with what each sets:
      received  (receive(): a PrefillRequest was read; an early TransferRequest is kept in `destination`)
      -> admitted  (in the engine: `sampling`, `admit_wait_s`)
      -> held  (prefilled: `output`, `lease_expiry_unix_s`, `prompt_token_ids`; the blocks are kept)
      -> in transfer  (a send claimed it, `in_transfer`: neither Release nor the lease frees it now;
         `send_start_s` on the sender thread, `reported` once its TransferDone went out)
      -> ended: PrefillWorker._end removes the job, the one place that does, when the receiver acks or the
         send fails, the lease expires, a Release comes, the engine aborts it or it cannot be admitted.
    A job is changed only under the worker's lock (the loop, connection, sender and transport threads
    share it). The lifecycle of the messages: prefill_worker.py.
    """
    destination: P.TransferRequest | None = None  # early TransferRequest (a reservation) kept until held
    sampling: dict | None = None  # the request's SamplingParams fields once admitted (travel in the TransferMeta)
    admit_wait_s: float = -1.0  # seconds from receipt to engine admission, in PrefillDone; -1: not measured
    output: object = None  # the engine's RequestOutput once held (block_ids, first token, rope delta)
    lease_expiry_unix_s: float = 0.0  # once held: the blocks are freed after this unless a send claimed them
    prompt_token_ids: list | None = None  # expanded prompt if the sampling reads it (a reservation's meta carries it)
    in_transfer: bool = False  # a send is in flight; the sender owns the lease then
    send_start_s: float | None = None  # perf_counter when its send began (send -> ack time, in TransferDone)
    send_bytes: int = 0  # KV bytes that send writes (destination blocks x the receiver's block bytes)
    reported: bool = False  # TransferDone sent (a transport may report one send twice)

    @property
    def is_admitted(self) -> bool:  # in the engine or held: a second copy of its PrefillRequest is a duplicate
        return self.sampling is not None

    @property
    def is_held(self) -> bool:
        return self.output is not None

    def claim(self, dest: P.TransferRequest):
        """A held job's send to `dest`: the destination blocks its KV fills, the job now in transfer
        (so nothing frees it mid-send); None when they are too few (nothing claimed)."""
        dst_ids = fit_destination(dest.dst_block_ids, dest.dst_block_size, self.output.num_computed_tokens)
        if dst_ids is not None:
            self.in_transfer = True
        return dst_ids
