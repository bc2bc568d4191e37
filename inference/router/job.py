"""One request as the router tracks it across attempts (see router.py for
the stages). Workers know an attempt as "<request_id>@<attempt>"."""
from __future__ import annotations

import math
from dataclasses import dataclass, field

from inference.disagg import protocol as P

IMAGE_TOKEN_PX = 28 * 28  # one image token per 28x28 px (patch 14, merge 2): a token estimate before prefill
TOKEN_SIDE_PX = 28  # side of one image token's square (patch 14, merge 2): for the reservation's upper bound
MIN_IMAGE_TOKENS = 4  # the processors' min_pixels (56x56) give a small image at least this many tokens


@dataclass
class Job:
    submit: P.Submit  # the client's request
    client: object  # where its Result goes
    submit_s: float  # router clock at admission
    attempt: int = 0  # bumped on every retry
    stage: str = "queued"  # queued | prefill | await_decode | alloc | transfer | decode
    # pre-allocation while in prefill: "" none | "alloc" reservation asked of `decode` | "dest" its blocks
    # named to the prefill worker (an early TransferRequest: KV may be written from then on)
    early: str = ""
    plain_only: bool = False  # a decode worker refused the landing of a reservation: later attempts take none
    prefill: str = ""  # prefill worker name of this attempt
    decode: str = ""  # decode worker name of this attempt
    prefilled: P.PrefillDone | None = None  # prefill result of this attempt
    first_token_s: float = 0.0  # router clock when the first token was known (first attempt that got one)
    deadline_s: float = 0.0  # transfer must be done by then
    num_retries: int = 0  # faults survived
    # router clock (s) per stage mark of the latest attempt (metrics.STAGES names them): submitted,
    # prefill_sent, reserve_sent, reserved, prefill_done, decode_sent, allocated, transfer_sent,
    # transfer_done, decode_done
    marks: dict = field(default_factory=dict)

    @property
    def wid(self) -> str:
        return f"{self.submit.request_id}@{self.attempt}"

    @property
    def est_tokens(self) -> int:
        return len(self.submit.prompt_token_ids) + sum(w * h // IMAGE_TOKEN_PX for w, h in self.submit.image_sizes)

    @property
    def reserve_tokens(self) -> int:
        """Upper bound of the expanded prompt for a reservation: image sides rounded up to whole
        tokens (the processors round to the nearest); a miss only costs the fallback path."""
        images = sum(max(math.ceil(w / TOKEN_SIDE_PX) * math.ceil(h / TOKEN_SIDE_PX), MIN_IMAGE_TOKENS)
                     for w, h in self.submit.image_sizes)
        return len(self.submit.prompt_token_ids) + images
