"""DisaggLLM: `LLM`'s offline batch API over a disaggregated layout.

    llm = DisaggLLM("dummy:tiny", layout="local-cpu-1p1d")
    outputs = llm.generate(requests, SamplingParams(temperature=0))
    llm.close()   # or use it as a context manager

The layout's workers and router run as local processes (cluster.Cluster),
started in the constructor and stopped by close(). Everything else is
RouterLLM's (remote.py): generate() submits every request to the router and
returns one RequestOutput per request, in input order; a rejected request
comes back with finish_reason "abort" and no tokens. Keyword arguments go to
every worker's EngineConfig (num_kv_blocks, max_model_len, seed, ...);
`cluster_kw` to the Cluster.
"""
from __future__ import annotations

from inference.disagg.cluster import Cluster
from inference.disagg.remote import RouterLLM


class DisaggLLM(RouterLLM):
    def __init__(self, model: str, layout, cluster_kw: dict | None = None, timeout_s: float | None = None, **engine_kw):
        self.cluster = Cluster(model, layout, engine_kw=engine_kw, **(cluster_kw or {})).start()
        try:
            self._attach(self.cluster.client(), timeout_s)
        except BaseException:  # the started workers and router must not outlive a failed constructor
            self.cluster.stop()
            raise

    def close(self) -> None:
        super().close()
        self.cluster.stop()
