"""Per-request sampling parameters (vLLM semantics).

Order applied to the logits of one step: repetition penalty (tokens of prompt
and output), frequency and presence penalties (output tokens), no-repeat
n-gram ban (over prompt + output, like transformers), then greedy argmax when
temperature == 0, else temperature, top-k, top-p and a draw (seeded per
request when `seed` is set).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field


@dataclass
class SamplingParams:
    temperature: float = 1.0          # 0 = greedy
    top_p: float = 1.0                # nucleus mass kept, (0, 1]
    top_k: int = 0                    # keep the k most likely tokens; 0 or -1 = all
    repetition_penalty: float = 1.0   # >1 discourages tokens already in prompt or output
    presence_penalty: float = 0.0     # subtracted once from tokens present in the output
    frequency_penalty: float = 0.0    # subtracted per occurrence in the output
    no_repeat_ngram_size: int = 0     # ban tokens completing an n-gram seen before; 0 = off
    stop_token_ids: list[int] = field(default_factory=list)  # finish on any of these (kept in output)
    max_tokens: int = 16              # generated tokens at most
    ignore_eos: bool = False          # keep going past the model's EOS ids
    seed: int | None = None           # per-request RNG seed for reproducible draws
    return_logits: bool = False       # debug/test: keep each step's raw fp32 logits row on the CPU
    detokenize: bool = True           # False: output text stays None (callers that decode token ids themselves)

    def __post_init__(self):
        for name in ("temperature", "top_p", "repetition_penalty", "presence_penalty", "frequency_penalty"):
            v = getattr(self, name)  # NaN passes every comparison below, and inf makes no sense here
            if isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v):
                raise ValueError(f"{name} must be a finite number, got {v!r}")
        if self.temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {self.temperature}")
        if not 0 < self.top_p <= 1:
            raise ValueError(f"top_p must be in (0, 1], got {self.top_p}")
        if self.top_k < -1:
            raise ValueError(f"top_k must be -1, 0 or positive, got {self.top_k}")
        if self.repetition_penalty <= 0:
            raise ValueError(f"repetition_penalty must be > 0, got {self.repetition_penalty}")
        if self.max_tokens < 1:
            raise ValueError(f"max_tokens must be >= 1, got {self.max_tokens}")
        if self.no_repeat_ngram_size < 0:
            raise ValueError(f"no_repeat_ngram_size must be >= 0, got {self.no_repeat_ngram_size}")
        if self.top_k == -1:
            self.top_k = 0

    @property
    def is_greedy(self) -> bool:
        return self.temperature == 0.0 or self.top_k == 1

    @property
    def reads_prompt(self) -> bool:
        """Whether sampling reads the prompt's tokens: the repetition penalty and n-gram bans do;
        presence and frequency penalties count output tokens only."""
        return self.repetition_penalty != 1.0 or self.no_repeat_ngram_size > 0

    @property
    def has_penalties(self) -> bool:
        return self.repetition_penalty != 1.0 or self.presence_penalty != 0.0 or self.frequency_penalty != 0.0
