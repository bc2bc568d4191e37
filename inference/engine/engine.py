"""LLMEngine: the step loop (schedule -> execute -> update) and the
request API that `LLM`, the prefill worker and the decode worker drive.

Request lifecycle (queues):
  add_request -> waiting -> running (chunked prefill, then one token a step)
  -> finished (streamed out of step() as RequestOutput, in batch order).
  Preempted requests go back to the front of waiting and are recomputed.

Async steps (config.async_scheduling, the default on CUDA): step() schedules and
launches step N+1 while step N still runs on the device, then waits for N's
tokens. Step N's sampled tokens enter the requests as placeholders
(scheduler.advance) and the runner feeds them to N+1 from the device; they are
filled in, and stop conditions checked, when N's tokens arrive
(scheduler.resolve). A request that stops on a token found there has already
been launched in N+1: that extra row is discarded. Finished requests
therefore come out of step() one call later than in sync mode, with the same
tokens. The host's scheduling, batch building and bookkeeping thus overlap
the device's step instead of adding to it.

Disaggregated roles use the same engine, no fork:
(a) Prefill worker: add_request(..., keep_kv=True) with SamplingParams(max_tokens=1).
    When it finishes, its RequestOutput carries first_token, rope_delta,
    num_computed_tokens (= prompt length) and block_ids; the blocks stay
    allocated (held) so the transfer engine can read kv_pool[block_ids]
    until release(request_id) ends the lease.
(b) Decode worker: add_prefilled_request(request_id, num_prompt_tokens,
    first_token, rope_delta, sampling) allocates blocks for the prompt and
    returns their ids (state WAITING_FOR_KV); the transfer engine writes the
    KV into kv_pool[block_ids]; kv_ready(request_id) then puts the request
    into running with num_computed_tokens = num_prompt_tokens and the first
    token as its pending input, so the next step decodes at position
    num_prompt_tokens + rope_delta. Such requests cannot be recomputed, so
    the scheduler preempts other requests first.
"""
from __future__ import annotations

from inference.config import EngineConfig
from inference.engine.block_manager import BlockManager
from inference.engine.request import Request, RequestOutput, RequestStatus
from inference.engine.scheduler import Scheduler
from inference.processor import ProcessedPrompt, Processor, adopt
from inference.sampling import SamplingParams
from inference.worker.model_runner import ModelRunner


class LLMEngine:
    def __init__(self, config: EngineConfig):
        self.config = config
        self.runner = ModelRunner(config)
        self.model_config = self.runner.model_config
        model_dir = None if config.model.startswith("dummy:") else config.model
        self.processor = Processor(self.model_config, model_dir, self.runner.device)
        self.block_manager = BlockManager(self.runner.num_kv_blocks, config.kv_block_size)
        self.scheduler = Scheduler(self.block_manager, config.max_num_seqs, config.max_num_batched_tokens,
                                   config.max_model_len, self.model_config.eos_token_ids,
                                   prefill_first=config.scheduling == "prefill_first",
                                   hold_tokens=config.prefill_hold_tokens, hold_s=config.prefill_hold_s)
        self.awaiting_kv: dict[str, Request] = {}
        self._inflight = None  # (SchedulerOutput, LaunchedStep) of the launched, not yet resolved step
        self._inflight_epoch = 0  # block_manager.epoch when that step was launched

    @property
    def kv_pool(self):
        return self.runner.kv_pool

    def _check_fits(self, request_id: str, num_tokens: int) -> None:
        if num_tokens > self.config.max_model_len:
            raise ValueError(f"request {request_id}: {num_tokens} tokens exceed max_model_len {self.config.max_model_len}")
        if self.block_manager.blocks_for(num_tokens) > self.block_manager.num_blocks:
            raise ValueError(f"request {request_id}: {num_tokens} tokens need more KV blocks than the pool has "
                             f"({self.block_manager.num_blocks} of {self.config.kv_block_size} tokens)")

    def add_request(self, request_id: str, request: dict | ProcessedPrompt, sampling: SamplingParams,
                    keep_kv: bool = False) -> Request:
        prompt = request if isinstance(request, ProcessedPrompt) else self.processor(request)
        adopt(prompt)  # pixels finished on another thread: this stream waits for them
        if not prompt.token_ids:
            raise ValueError(f"request {request_id}: empty prompt")
        self._check_fits(request_id, len(prompt.token_ids) + sampling.max_tokens)
        req = Request(request_id, prompt, sampling, keep_kv=keep_kv)
        self.scheduler.add(req)
        return req

    def add_prefilled_request(self, request_id: str, num_prompt_tokens: int, first_token: int, rope_delta: int,
                              sampling: SamplingParams, prompt_token_ids: list[int] | None = None) -> list[int]:
        """Decode role: allocate blocks for a prompt whose KV will be written
        from outside; returns the block ids to write into."""
        self._check_fits(request_id, num_prompt_tokens + sampling.max_tokens)
        req = self._awaiting(request_id, num_prompt_tokens, first_token, rope_delta, sampling, prompt_token_ids)
        if not self.block_manager.allocate(req.block_ids, num_prompt_tokens):
            raise RuntimeError(f"request {request_id}: no free KV blocks for {num_prompt_tokens} prompt tokens")
        # The KV is written from outside the engine's stream (another process, a transfer thread). The
        # launched step may still write blocks of rows whose requests finished after its launch: wait
        # for it only when one of those blocks was handed out here (blocks free at its launch are not
        # in it, and the step before it was collected before step() returned).
        if self._inflight is not None and self.block_manager.freed_since(req.block_ids, self._inflight_epoch):
            self.wait_inflight()
        self.awaiting_kv[request_id] = req
        return list(req.block_ids)

    def adopt_reservation(self, request_id: str, num_prompt_tokens: int, first_token: int, rope_delta: int,
                          sampling: SamplingParams, prompt_token_ids: list[int] | None = None) -> None:
        """Decode role: a request reserved with add_prefilled_request for an upper bound of its
        prompt (placeholder first token) becomes the one its landed KV describes, on the leading
        blocks that hold num_prompt_tokens; the rest (never named to a sender) are freed."""
        held = self.awaiting_kv[request_id]
        keep = self.block_manager.blocks_for(num_prompt_tokens)
        if keep > len(held.block_ids):
            raise ValueError(f"request {request_id}: {num_prompt_tokens} tokens exceed its reservation")
        req = self._awaiting(request_id, num_prompt_tokens, first_token, rope_delta, sampling, prompt_token_ids)
        req.block_ids, extra = list(held.block_ids[:keep]), list(held.block_ids[keep:])
        if extra:
            self.block_manager.free(extra)
        self.awaiting_kv[request_id] = req

    @staticmethod
    def _awaiting(request_id: str, num_prompt_tokens: int, first_token: int, rope_delta: int,
                  sampling: SamplingParams, prompt_token_ids: list[int] | None) -> Request:
        """A request whose prompt KV is written from outside, waiting for it (no blocks yet)."""
        import torch

        ids = list(prompt_token_ids) if prompt_token_ids is not None else [0] * num_prompt_tokens
        assert len(ids) == num_prompt_tokens, "prompt_token_ids must have num_prompt_tokens entries"
        # Only decode positions are needed (cache position + rope_delta); prompt positions are never read;
        # the ids only by sampling that reads the prompt (penalties, n-gram bans).
        prompt = ProcessedPrompt(ids, torch.zeros(3, num_prompt_tokens, dtype=torch.long), rope_delta)
        req = Request(request_id, prompt, sampling, recomputable=False)
        req.status = RequestStatus.WAITING_FOR_KV
        req.num_computed_tokens = num_prompt_tokens
        req.append_token(first_token)
        return req

    def wait_inflight(self) -> None:
        """Block until the launched step's device work is done."""
        if self._inflight is not None and self._inflight[1].ready is not None:
            self._inflight[1].ready.synchronize()

    def kv_ready(self, request_id: str) -> list[RequestOutput]:
        """The prompt KV of an add_prefilled_request is in the pool: start
        decoding (or finish at once if the first token already ends it)."""
        req = self.awaiting_kv.pop(request_id)
        status = self.scheduler._stop_status(req)
        if status is not None:
            self.scheduler.finish(req, status)
            return [self._output(req)]
        req.status = RequestStatus.RUNNING
        self.scheduler.running.append(req)
        return []

    def release(self, request_id: str) -> None:
        self.scheduler.release(request_id)

    def abort(self, request_id: str) -> None:
        awaiting = self.awaiting_kv.pop(request_id, None)
        if awaiting is not None:  # never reached the scheduler: only its blocks to free
            self.block_manager.free(awaiting.block_ids)
            return
        for req in list(self.scheduler.running) + list(self.scheduler.waiting):
            if req.request_id == request_id:
                self.scheduler.finish(req, RequestStatus.FINISHED_ABORTED)

    def has_unfinished_requests(self) -> bool:
        # A launched step whose requests all finished meanwhile (aborted) has nothing left to give.
        return self.scheduler.has_work() or (
            self._inflight is not None and any(not r.status.is_finished for r in self._inflight[0].sampling))

    def step(self) -> list[RequestOutput]:
        sched = self.scheduler.schedule()
        if not self.config.async_scheduling:
            return [self._output(req) for req in self.scheduler.update(sched, self.runner.execute(sched).sampled)]
        self.block_manager.epoch += 1  # blocks freed from here on may be in the step launched now
        epoch = self.block_manager.epoch
        launched = self.runner.launch(sched)
        self.scheduler.advance(sched)
        finished = []
        if self._inflight is not None:
            prev_sched, prev_launched = self._inflight
            finished = self.scheduler.resolve(prev_sched, self.runner.collect(prev_launched).sampled)
        self._inflight = (sched, launched) if sched.scheduled else None
        self._inflight_epoch = epoch
        return [self._output(req) for req in finished]

    def _output(self, req: Request) -> RequestOutput:
        import time

        req.finish_time_s = req.finish_time_s or time.perf_counter()
        text = self.processor.decode(req.output_token_ids) if req.sampling.detokenize else None
        return RequestOutput.from_request(req, text)
