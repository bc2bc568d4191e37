"""Worker choice and SLO admission for the router (pure functions of state).

- Prefill worker: the alive one with the fewest queued prefill tokens (the
  router's own count of tokens it sent and has not heard back about, which
  is never older than the worker's last Load report).
- Decode worker: among alive ones that admit new requests, the one with the
  most free KV blocks that can hold the prompt now.
- TPOT: a decode worker admits while its predicted step time with one more
  sequence stays within the TPOT target (step time scales with the batch
  on a bandwidth-bound decode: step_s * (running + 1) / running) and it has
  a free seat. When none admits, prefill dispatch is held back (requests
  queue at the router instead of piling KV on the prefill side).
- TTFT: the predicted wait is the queued prefill tokens ahead divided by the
  measured prefill rate: prompt tokens a worker finished per second while it
  had work (a busy window from the dispatch that found it idle, sampled at
  least RATE_WINDOW_S apart), not one request's arrival-to-first-token time,
  which holds its wait behind the others and would make the rate look lower
  the longer the queue is; above the target a request is rejected
  (slo_policy="reject") or admitted anyway and counted as a miss ("defer").
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

RATE_WINDOW_S = 0.05  # shortest busy window sampled for the prefill rate (PrefillDones of one step arrive together)


@dataclass
class WorkerState:
    name: str  # "prefill-0", "decode-1", ...
    role: str  # "prefill" | "decode"
    channel: object  # where to send (a Channel, or anything the send function takes)
    alive: bool = True  # False once its connection is lost
    block_size: int = 16  # tokens per KV block (decode: for block arithmetic)
    transfer_address: str = ""  # decode: its KV receiver
    num_free_blocks: int = 0  # decode: from the last report / reply
    num_running: int = 0  # decode: sequences decoding; prefill: requests in the engine
    step_s: float = 0.0  # EWMA of engine step seconds (decode: the TPOT signal)
    queued_tokens: int = 0  # prefill: prompt tokens sent and not yet done
    rate_since_s: float = 0.0  # prefill: router clock when its current rate window began
    rate_tokens: int = 0  # prefill: prompt tokens finished in that window
    inflight: set = field(default_factory=set)  # request ids currently assigned to it
    max_num_seqs: int = 256  # seats


@dataclass
class SloState:
    ttft_s: float  # TTFT target
    tpot_s: float  # TPOT target
    prefill_tokens_per_s: float = 0.0  # measured prefill rate (EWMA); 0 = unknown yet

    def observe_prefill(self, num_tokens: int, seconds: float) -> None:
        if seconds <= 0 or num_tokens <= 0:
            return
        rate = num_tokens / seconds
        self.prefill_tokens_per_s = rate if not self.prefill_tokens_per_s else 0.8 * self.prefill_tokens_per_s + 0.2 * rate

    def observe_done(self, w: "WorkerState", num_tokens: int, now_s: float) -> None:
        """A prefill of num_tokens finished on w at now_s: count it in w's busy window."""
        w.rate_tokens += num_tokens
        if now_s - w.rate_since_s >= RATE_WINDOW_S:
            self.observe_prefill(w.rate_tokens, now_s - w.rate_since_s)
            w.rate_since_s, w.rate_tokens = now_s, 0

    def predicted_ttft_s(self, tokens_ahead: int, num_prefill_workers: int) -> float:
        if not self.prefill_tokens_per_s or num_prefill_workers == 0:
            return 0.0  # nothing measured yet: admit and learn
        return tokens_ahead / (self.prefill_tokens_per_s * num_prefill_workers)


def decode_admits(w: WorkerState, tpot_s: float, num_pending: int = 0) -> bool:
    """Would one more sequence on w keep its TPOT within target?"""
    if not w.alive or w.num_running + num_pending >= w.max_num_seqs:
        return False
    n = w.num_running + num_pending
    if n == 0 or w.step_s <= 0:
        return True
    return w.step_s * (n + 1) / n <= tpot_s


def pending_allocs(jobs) -> dict[str, int]:
    """Decode worker name -> its allocations asked and not yet decoding (jobs in alloc or transfer,
    and reservations of jobs still in prefill)."""
    out: dict[str, int] = {}
    for job in jobs:
        if job.stage in ("alloc", "transfer") or (job.stage == "prefill" and job.decode):
            out[job.decode] = out.get(job.decode, 0) + 1
    return out


def decode_has_room(workers, tpot_s: float, pending: dict[str, int]) -> bool:
    """Would some decode worker take one more sequence within the TPOT target?"""
    return any(w.role == "decode" and decode_admits(w, tpot_s, pending.get(w.name, 0)) for w in workers)


def pick_prefill(workers: list[WorkerState]) -> WorkerState | None:
    alive = [w for w in workers if w.alive and w.role == "prefill" and len(w.inflight) < w.max_num_seqs]
    return min(alive, key=lambda w: (w.queued_tokens, len(w.inflight), w.name), default=None)


def blocks_needed(num_tokens: int, block_size: int) -> int:
    return math.ceil(num_tokens / block_size)


def pick_decode(workers: list[WorkerState], num_prompt_tokens: int, tpot_s: float,
                pending: dict[str, int]) -> WorkerState | None:
    """pending: worker name -> allocations asked and not yet decoding."""
    fit = [w for w in workers if w.role == "decode" and decode_admits(w, tpot_s, pending.get(w.name, 0))
           and w.num_free_blocks >= blocks_needed(num_prompt_tokens + 1, w.block_size)]
    return max(fit, key=lambda w: (w.num_free_blocks, -w.num_running, w.name), default=None)
