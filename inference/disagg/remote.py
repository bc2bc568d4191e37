"""RouterLLM: `LLM`'s offline batch API over a router that is already running.

    with RouterLLM("10.0.0.5:7000", token) as llm:     # token None: $DOCPIPE_TOKEN
        outputs = llm.generate(requests, SamplingParams(temperature=0))

No processes are started or stopped here: whoever runs the router and its
workers (`docpipe serve`, `cluster.Cluster`, `docpipe.ray.pd.PdPools`) owns
them; close() only hangs up. DisaggLLM is this class over a Cluster it starts.

generate() contract: requests carry `prompt_token_ids` (tokenized by the
caller: the router's workers take ids only) and optional `images`; every
request is checked before any is sent, so a bad one submits nothing. It
returns one RequestOutput per request, in input order (token_ids, text,
ttft_s, tpot_s, finish_reason). A request the router rejects comes back with
finish_reason "abort" and no tokens, so a batch never loses its other
results. Request ids are unique per RouterLLM (a random prefix), because the
router keys requests by id across all its clients and rejects a repeat.
"""
from __future__ import annotations

import itertools
import logging
import os
import secrets

from inference.disagg import protocol as P
from inference.disagg.client import RouterClient, to_submit
from inference.engine.request import RequestOutput
from inference.layouts import Layout
from inference.llm import batch_args
from inference.sampling import SamplingParams

log = logging.getLogger("inference.disagg.remote")

TOKEN_ENV = Layout.token_env  # the layouts' default token variable (DOCPIPE_TOKEN)


def resolve_token(token: str | None) -> str:
    token = token or os.environ.get(TOKEN_ENV)
    if not token:
        raise ValueError(f"no router token: pass token= or set ${TOKEN_ENV}")
    return token


class RouterLLM:
    def __init__(self, address: str, token: str | None = None, timeout_s: float | None = None):
        self._attach(RouterClient(address, resolve_token(token).encode()), timeout_s)

    def _attach(self, client: RouterClient, timeout_s: float | None) -> None:
        """What every constructor ends with; subclasses that build the client themselves call it."""
        self.client = client
        self.timeout_s = timeout_s  # per generate() call; None waits for as long as it takes
        self._prefix = secrets.token_hex(6)
        self._ids = itertools.count()

    def generate(self, requests: list[dict] | dict, sampling: SamplingParams | list[SamplingParams] | None = None) -> list[RequestOutput]:
        requests, params = batch_args(requests, sampling)
        ids = [f"{self._prefix}-{next(self._ids)}" for _ in requests]
        messages = [to_submit(rid, request, param) for rid, request, param in zip(ids, requests, params)]
        for msg in messages:
            self.client.channel.send(msg)
        results = self.client.wait(ids, self.timeout_s)
        return [to_output(results[rid]) for rid in ids]

    def metrics(self, fmt: str = "json") -> str:
        return self.client.metrics(fmt)

    def close(self) -> None:
        self.client.close()

    def __enter__(self) -> "RouterLLM":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def to_output(msg) -> RequestOutput:
    if isinstance(msg, P.Rejected):
        log.warning("request %s rejected: %s", msg.request_id, msg.reason)
        return RequestOutput(request_id=msg.request_id, token_ids=[], finish_reason="abort", num_prompt_tokens=0,
                             ttft_s=0.0, tpot_s=0.0, text=f"rejected: {msg.reason}")
    return RequestOutput(request_id=msg.request_id, token_ids=list(msg.token_ids), finish_reason=msg.finish_reason,
                         num_prompt_tokens=msg.num_prompt_tokens, ttft_s=msg.ttft_s, tpot_s=msg.tpot_s, text=msg.text)
