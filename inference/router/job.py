"""One request as the router tracks it across attempts (see router.py for
the stages). Workers know an attempt as "<request_id>@<attempt>"."""
from __future__ import annotations

from dataclasses import dataclass, field

from inference.disagg import protocol as P

IMAGE_TOKEN_PX = 28 * 28  # one image token per 28x28 px (patch 14, merge 2): a token estimate before prefill


@dataclass
class Job:
    submit: P.Submit  # the client's request
    client: object  # where its Result goes
    submit_s: float  # router clock at admission
    attempt: int = 0  # bumped on every retry
    stage: str = "queued"  # queued | prefill | await_decode | alloc | transfer | decode
    prefill: str = ""  # prefill worker name of this attempt
    decode: str = ""  # decode worker name of this attempt
    prefilled: P.PrefillDone | None = None  # prefill result of this attempt
    first_token_s: float = 0.0  # router clock when the first token was known (first attempt that got one)
    deadline_s: float = 0.0  # transfer must be done by then
    num_retries: int = 0  # faults survived
    # router clock (s) per stage mark of the latest attempt (metrics.STAGES names them): submitted,
    # prefill_sent, prefill_done, decode_sent, allocated, transfer_sent, transfer_done, decode_done
    marks: dict = field(default_factory=dict)

    @property
    def wid(self) -> str:
        return f"{self.submit.request_id}@{self.attempt}"

    @property
    def est_tokens(self) -> int:
        return len(self.submit.prompt_token_ids) + sum(w * h // IMAGE_TOKEN_PX for w, h in self.submit.image_sizes)
