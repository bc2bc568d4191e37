"""DisaggLLM: `LLM`'s offline batch API over a disaggregated layout.

    llm = DisaggLLM("dummy:tiny", layout="local-cpu-1p1d")
    outputs = llm.generate(requests, SamplingParams(temperature=0))
    llm.close()   # or use it as a context manager

The layout's workers and router run as local processes (cluster.Cluster),
started in the constructor and stopped by close(). generate() submits every
request to the router and returns one RequestOutput per request, in input
order (token_ids, text, ttft_s, tpot_s, finish_reason). A request the router
rejects comes back with finish_reason "abort" and no tokens, so a batch never
loses its other results. Keyword arguments go to every worker's EngineConfig
(num_kv_blocks, max_model_len, seed, ...); `cluster_kw` to the Cluster.
"""
from __future__ import annotations

import itertools
import logging

from inference.disagg import protocol as P
from inference.disagg.cluster import Cluster
from inference.engine.request import RequestOutput
from inference.sampling import SamplingParams

log = logging.getLogger("inference.disagg.llm")


class DisaggLLM:
    def __init__(self, model: str, layout, cluster_kw: dict | None = None, timeout_s: float | None = None, **engine_kw):
        self.cluster = Cluster(model, layout, engine_kw=engine_kw, **(cluster_kw or {})).start()
        try:
            self.client = self.cluster.client()
        except BaseException:  # the started workers and router must not outlive a failed constructor
            self.cluster.stop()
            raise
        self.timeout_s = timeout_s
        self._ids = itertools.count()

    def generate(self, requests: list[dict] | dict, sampling: SamplingParams | list[SamplingParams] | None = None) -> list[RequestOutput]:
        requests = [requests] if isinstance(requests, dict) else list(requests)
        sampling = sampling or SamplingParams()
        params = sampling if isinstance(sampling, list) else [sampling] * len(requests)
        if len(params) != len(requests):
            raise ValueError(f"{len(params)} sampling params for {len(requests)} requests")
        ids = [str(next(self._ids)) for _ in requests]
        for rid, request, param in zip(ids, requests, params):
            self.client.submit(rid, request, param)
        results = self.client.wait(ids, self.timeout_s)
        return [to_output(results[rid]) for rid in ids]

    def metrics(self, fmt: str = "json") -> str:
        return self.client.metrics(fmt)

    def close(self) -> None:
        self.client.close()
        self.cluster.stop()

    def __enter__(self) -> "DisaggLLM":
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
