"""A request inside the engine, and the result handed back.

Token history lives in a numpy buffer (`token_buffer`) sized prompt + max_tokens, so the
sampler reads it without rebuilding Python lists every step.
"""
from __future__ import annotations

import enum
import time
from dataclasses import dataclass, field

import numpy as np
import torch

from inference.processor import ProcessedPrompt
from inference.sampling import SamplingParams


PENDING = -1  # token_buffer placeholder for a token sampled on the device, not yet copied back


class RequestStatus(enum.Enum):
    WAITING = "waiting"                # queued for (re)prefill
    WAITING_FOR_KV = "waiting_for_kv"  # decode role: blocks allocated, KV being written from outside
    RUNNING = "running"
    FINISHED_STOPPED = "stop"          # EOS or a stop token
    FINISHED_LENGTH = "length"         # max_tokens or max_model_len
    FINISHED_ABORTED = "abort"

    @property
    def is_finished(self) -> bool:
        return self in _FINISHED  # read for every running request every step: a set lookup


_FINISHED = frozenset({RequestStatus.FINISHED_STOPPED, RequestStatus.FINISHED_LENGTH, RequestStatus.FINISHED_ABORTED})


class Request:
    def __init__(self, request_id: str, prompt: ProcessedPrompt, sampling: SamplingParams,
                 keep_kv: bool = False, recomputable: bool = True):
        self.request_id = request_id
        self.prompt = prompt
        self.sampling = sampling
        self.keep_kv = keep_kv              # prefill role: blocks survive finish until release()
        self.recomputable = recomputable    # False when the prompt's KV came from outside
        # read by the sampler for every row every step: plain attributes, not SamplingParams'
        # properties (a Python call each). is_plain_greedy: argmax of the raw logits is the whole
        # sampling step (the sampler's fast path)
        self.is_greedy = sampling.is_greedy
        self.is_plain_greedy = self.is_greedy and not sampling.has_penalties and not sampling.no_repeat_ngram_size
        self.num_prompt_tokens = len(prompt.token_ids)
        # prompt + outputs; the first num_tokens entries are valid (the batch builder reads it directly)
        self.token_buffer = np.zeros(self.num_prompt_tokens + sampling.max_tokens, dtype=np.int64)
        self.token_buffer[: self.num_prompt_tokens] = prompt.token_ids
        self.num_tokens = self.num_prompt_tokens
        # Sampled tokens still on the device (async steps): the last num_pending entries of the
        # history are placeholders (-1) until the step's tokens reach the host (resolve_pending).
        self.num_pending = 0
        self.num_computed_tokens = 0        # tokens whose KV is in the pool
        self.block_ids: list[int] = []
        self.status = RequestStatus.WAITING
        self.arrival_time_s = time.perf_counter()
        self.first_token_time_s: float | None = None
        self.finish_time_s: float | None = None
        self.num_preemptions = 0
        self.logits: list[torch.Tensor] = []  # only with sampling.return_logits
        self.generator: torch.Generator | None = None  # per-request RNG, made on the device by the sampler

    @property
    def token_ids(self) -> np.ndarray:
        return self.token_buffer[: self.num_tokens]

    @property
    def output_token_ids(self) -> list[int]:
        """Generated tokens known on the host (pending placeholders excluded)."""
        return self.token_buffer[self.num_prompt_tokens : self.num_tokens - self.num_pending].tolist()

    @property
    def num_output_tokens(self) -> int:
        return self.num_tokens - self.num_prompt_tokens

    @property
    def rope_delta(self) -> int:
        return self.prompt.rope_delta

    def append_pending(self) -> None:
        """A token was sampled on the device but is not known here yet."""
        self.token_buffer[self.num_tokens] = PENDING
        self.num_tokens += 1
        self.num_pending += 1

    def resolve_pending(self, token: int) -> None:
        """The oldest pending token arrived."""
        self.token_buffer[self.num_tokens - self.num_pending] = token
        self.num_pending -= 1
        if self.first_token_time_s is None:
            self.first_token_time_s = time.perf_counter()

    def drop_pending(self) -> None:
        """Forget placeholders (the request finished before they were resolved)."""
        self.num_tokens -= self.num_pending
        self.num_pending = 0

    def append_token(self, token: int) -> None:
        """A token known on the host at once (a prefill worker's first token, tests)."""
        self.append_pending()
        self.resolve_pending(token)


@dataclass
class RequestOutput:
    request_id: str
    token_ids: list[int]                 # generated tokens (stop token included)
    finish_reason: str                   # "stop" | "length" | "abort"
    num_prompt_tokens: int               # after image placeholder expansion
    ttft_s: float                        # arrival -> first token
    tpot_s: float                        # mean time per output token after the first
    text: str | None = None              # when the model has a tokenizer
    rope_delta: int = 0                  # M-RoPE delta (decode position = cache position + delta)
    block_ids: list[int] = field(default_factory=list)  # held KV blocks (keep_kv requests only)
    num_computed_tokens: int = 0         # tokens whose KV sits in block_ids
    num_preemptions: int = 0
    logits: torch.Tensor | None = None   # [num_outputs, vocab] fp32, with return_logits

    @property
    def first_token(self) -> int:
        return self.token_ids[0]

    @classmethod
    def from_request(cls, req: Request, text: str | None = None) -> "RequestOutput":
        outputs = req.output_token_ids
        first = req.first_token_time_s or req.finish_time_s or req.arrival_time_s
        finish = req.finish_time_s or first
        return cls(
            request_id=req.request_id, token_ids=outputs, finish_reason=req.status.value,
            num_prompt_tokens=req.num_prompt_tokens, ttft_s=first - req.arrival_time_s,
            tpot_s=(finish - first) / max(len(outputs) - 1, 1), text=text, rope_delta=req.rope_delta,
            block_ids=list(req.block_ids) if req.keep_kv else [], num_computed_tokens=req.num_computed_tokens,
            num_preemptions=req.num_preemptions, logits=torch.stack(req.logits) if req.logits else None,
        )
