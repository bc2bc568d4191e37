"""Continuous-batching scheduler with chunked prefill and preemption by
recompute.

Queues: waiting (FIFO; preempted requests go back to its front) -> running
(in admission order) -> finished. Requests in WAITING_FOR_KV never enter
them: the engine keeps them aside (`awaiting_kv`) until their KV lands in
the pool (decode role).

Each step spends a token budget (max_num_batched_tokens): running requests
first, in order (one token for a decode, the next chunk for an unfinished
prefill), then waiting requests while seats (max_num_seqs), budget and KV
blocks last. When a running request needs a block and none is free, the last
running request not yet scheduled this step whose KV can be recomputed is
preempted (the request itself when there is none; no admission follows in
that step): its blocks are freed and it restarts from scratch (prompt +
tokens generated so far) later. A request samples a token
only in the step whose chunk reaches the end of its known tokens.

With `prefill_first`, a step that can make prefill progress (prompt chunks of
running requests, then admissions) holds prefill work only; decodes run in
their own steps, which graph mode replays as captured CUDA graphs. A step
that finds no prefill to do (nothing waiting, or no seat or block for it)
falls back to the mixed policy, so decodes never starve behind a full pool.

Prefill hold (prefill_first only, hold_tokens > 0): while decodes are
running and no prompt is mid-chunk, new arrivals wait until hold_tokens
prompt tokens are queued or the oldest has waited hold_s. A stream of small
arrivals (a document pipeline submits ~13 requests a page as layouts finish)
otherwise turns into one small prefill step per arrival, each paying a full
step's host cost and interrupting the decode batch; held, they go in fewer,
larger steps (larger vision batches too). TTFT grows by at most hold_s.
"""
from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass, field

from inference.engine.block_manager import BlockManager
from inference.engine.request import Request, RequestStatus


@dataclass
class ScheduledRequest:
    request: Request
    num_new_tokens: int          # tokens computed this step, from request.num_computed_tokens

    @property
    def samples(self) -> bool:
        req = self.request
        return req.num_computed_tokens + self.num_new_tokens == req.num_tokens


@dataclass
class SchedulerOutput:
    scheduled: list[ScheduledRequest] = field(default_factory=list)  # in batch order
    freed_request_ids: list[str] = field(default_factory=list)       # preempted/finished since last step: drop worker caches
    sampling: list[Request] = field(default_factory=list)            # set by advance(): requests that sample this step

    @property
    def num_tokens(self) -> int:
        return sum(s.num_new_tokens for s in self.scheduled)


class Scheduler:
    def __init__(self, block_manager: BlockManager, max_num_seqs: int, max_num_batched_tokens: int,
                 max_model_len: int, eos_token_ids: list[int], prefill_first: bool = False,
                 hold_tokens: int = 0, hold_s: float = 0.0, clock=time.perf_counter):
        self.blocks = block_manager
        self.prefill_first = prefill_first
        self.hold_tokens, self.hold_s, self.clock = hold_tokens, hold_s, clock
        self.max_num_seqs = max_num_seqs
        self.max_num_batched_tokens = max_num_batched_tokens
        self.max_model_len = max_model_len
        self.eos_token_ids = set(eos_token_ids)
        self.waiting: deque[Request] = deque()
        self.running: list[Request] = []
        self.held: dict[str, Request] = {}   # finished keep_kv requests, by id, until release()
        self._freed: list[str] = []
        self._freed_by_preemption = False  # set by _schedule, read by schedule()

    def add(self, req: Request) -> None:
        self.waiting.append(req)

    def num_waiting_tokens(self) -> int:
        """Prompt tokens queued and not yet admitted."""
        return sum(r.num_tokens - r.num_computed_tokens for r in self.waiting)

    def has_work(self) -> bool:
        return bool(self.waiting or self.running)

    def schedule(self) -> SchedulerOutput:
        out = None
        if self.prefill_first and ((self.waiting and not self._holding())
                                   or any(self._in_prefill(r) for r in self.running)):
            out = self._schedule(prefill_only=True)
        elif self.prefill_first and self.waiting:  # holding: decodes only, admissions wait
            out = self._schedule(prefill_only=False, admit=False)
        if out is None or not out.scheduled:
            # no admission after a preemption in this step: the victim may still await its last
            # sampled token (async steps), and its recompute must see it
            out = self._schedule(prefill_only=False, admit=not self._freed_by_preemption)
        self._freed_by_preemption = False
        out.freed_request_ids, self._freed = self._freed, []
        return out

    def _holding(self) -> bool:
        """Keep queued arrivals waiting for a larger prefill step (see module doc)."""
        if self.hold_tokens <= 0 or not self.running or len(self.running) >= self.max_num_seqs:
            return False
        if self.clock() - self.waiting[0].arrival_time_s >= self.hold_s:
            return False
        return self.num_waiting_tokens() < self.hold_tokens

    @staticmethod
    def _in_prefill(req: Request) -> bool:
        return req.num_computed_tokens < req.num_prompt_tokens

    def _schedule(self, prefill_only: bool, admit: bool = True) -> SchedulerOutput:
        out = SchedulerOutput()
        budget = self.max_num_batched_tokens
        preempted = False
        i = 0
        block_size = self.blocks.block_size
        while i < len(self.running) and budget > 0:
            req = self.running[i]
            if (prefill_only and not self._in_prefill(req)) or (req.num_pending and self._ends_when_resolved(req)):
                i += 1
                continue
            num_new = min(req.num_tokens - req.num_computed_tokens, budget)
            # no new block needed (most decodes): straight to the else branch, no allocate() call
            fits = req.num_computed_tokens + num_new <= len(req.block_ids) * block_size
            while not fits and not self.blocks.allocate(req.block_ids, req.num_computed_tokens + num_new):
                victim = self._pick_victim(i)
                if victim is req and req.num_pending and not req.recomputable:
                    break  # its pending token may be its last: wait for it rather than fail the request
                self._preempt(victim)
                preempted = self._freed_by_preemption = True
                if victim is req:
                    break
            else:
                out.scheduled.append(ScheduledRequest(req, num_new))
                budget -= num_new
                i += 1
                continue
            if req in self.running:  # skipped this step (pool full, token pending), still running
                i += 1
        while admit and self.waiting and budget > 0 and len(self.running) < self.max_num_seqs and not preempted:
            req = self.waiting[0]
            num_new = min(req.num_tokens - req.num_computed_tokens, budget)
            if not self.blocks.allocate(req.block_ids, req.num_computed_tokens + num_new):
                break
            self.waiting.popleft()
            req.status = RequestStatus.RUNNING
            self.running.append(req)
            out.scheduled.append(ScheduledRequest(req, num_new))
            budget -= num_new
        return out

    def _pick_victim(self, first: int) -> Request:
        """The last not-yet-scheduled running request that can be recomputed
        (running[first] itself as the last resort)."""
        for victim in reversed(self.running[first + 1:]):
            if victim.recomputable:
                return victim
        return self.running[first]

    def _preempt(self, req: Request) -> None:
        if not req.recomputable:
            raise RuntimeError(f"request {req.request_id}: KV pool exhausted; its KV came from outside "
                               "and cannot be recomputed (give the decode pool more blocks)")
        self.running.remove(req)
        self.blocks.free(req.block_ids)
        req.num_computed_tokens = 0
        req.num_preemptions += 1
        req.status = RequestStatus.WAITING
        self.waiting.appendleft(req)
        self._freed.append(req.request_id)

    def update(self, out: SchedulerOutput, sampled: dict[str, int]) -> list[Request]:
        """Advance computed counts, append sampled tokens, retire finished
        requests (returned, in batch order)."""
        self.advance(out)
        return self.resolve(out, sampled)

    def advance(self, out: SchedulerOutput) -> None:
        """The step was launched: its chunks count as computed and each
        sampling request gets a placeholder token, so the next step can be
        scheduled (and launched) before this one's tokens are on the host."""
        out.sampling = []
        for item in out.scheduled:
            req = item.request
            req.num_computed_tokens += item.num_new_tokens
            if req.num_computed_tokens == req.num_tokens:  # else a mid-prompt chunk: nothing sampled
                req.append_pending()
                out.sampling.append(req)

    def resolve(self, out: SchedulerOutput, sampled: dict[str, int]) -> list[Request]:
        """The step's tokens arrived: fill the placeholders, retire finished
        requests (returned, in batch order). A request that finished while the
        step ran (aborted, or stopped on the previous token) is skipped; any
        placeholder of a later step it was already in is dropped."""
        finished = []
        for req in out.sampling:
            if req.status.is_finished:
                continue
            token = sampled[req.request_id]
            req.resolve_pending(token)
            status = self._stop_status(req, token)
            if status is not None:
                req.drop_pending()
                self.finish(req, status)
                finished.append(req)
        return finished

    def _ends_when_resolved(self, req: Request) -> bool:
        """Its pending token is its last one whatever its value (length limits)."""
        return req.num_output_tokens >= req.sampling.max_tokens or req.num_tokens >= self.max_model_len

    def _stop_status(self, req: Request, token: int | None = None) -> RequestStatus | None:
        """Stop condition on the last token known on the host (`token`, when the caller has it)."""
        known = req.num_tokens - req.num_pending
        params = req.sampling
        if token is None:
            token = int(req.token_buffer[known - 1])
        if (params.stop_token_ids and token in params.stop_token_ids) or (not params.ignore_eos and token in self.eos_token_ids):
            return RequestStatus.FINISHED_STOPPED
        if known - req.num_prompt_tokens >= params.max_tokens or known >= self.max_model_len:
            return RequestStatus.FINISHED_LENGTH
        return None

    def finish(self, req: Request, status: RequestStatus) -> None:
        req.drop_pending()
        # A later step may already have run a row of this request (async steps: it stopped on a token
        # resolved late, or was aborted in flight); that row's logits and KV count are not the output's.
        del req.logits[req.num_output_tokens:]
        req.num_computed_tokens = min(req.num_computed_tokens, max(req.num_tokens - 1, 0))
        if req in self.running:
            self.running.remove(req)
        elif req in self.waiting:
            self.waiting.remove(req)
        req.status = status
        self._freed.append(req.request_id)
        if req.keep_kv:
            # blocks only that discarded row needed are not part of the lease
            keep = self.blocks.blocks_for(req.num_computed_tokens)
            tail = req.block_ids[keep:]
            del req.block_ids[keep:]
            self.blocks.free(tail)
            self.held[req.request_id] = req   # freed by release()
        else:
            self.blocks.free(req.block_ids)

    def release(self, request_id: str) -> None:
        """Free the blocks a keep_kv request still holds (lease ended)."""
        req = self.held.pop(request_id)
        self.blocks.free(req.block_ids)
