"""LLM: the offline batch API over LLMEngine.

    llm = LLM(model="dummy:tiny" | "/path/to/hf_dir", dtype="auto", device="cuda")
    results = llm.generate([{"prompt_token_ids": [...], "images": [img]}], SamplingParams(temperature=0))

generate() returns one RequestOutput per request, in input order.
"""
from __future__ import annotations

import torch

from inference.config import EngineConfig
from inference.engine.engine import LLMEngine
from inference.engine.request import RequestOutput
from inference.sampling import SamplingParams


class LLM:
    """`layout=` (a layout file or shipped name, see inference/layouts.py): a
    disaggregated layout returns a `DisaggLLM` running the layout's prefill and
    decode workers as local processes (same generate() contract); an embedded
    layout supplies this engine's device, dtype, mode and sizes."""

    def __new__(cls, model: str | None = None, *args, layout=None, **kwargs):
        if layout is not None and _layout(layout).is_disaggregated:
            from inference.disagg.llm import DisaggLLM

            return DisaggLLM(model, layout, **kwargs)
        return super().__new__(cls)

    def __init__(self, model: str, dtype: str | torch.dtype = "auto", device: str | None = None,
                 kv_block_size: int = 16, max_num_seqs: int = 256, max_num_batched_tokens: int | None = None,
                 num_kv_blocks: int | None = None, ops_backend: str | None = None, mode: str = "graph",
                 layout=None, **kwargs):
        if layout is not None:
            w = _layout(layout).role("embedded")
            device, dtype, mode, ops_backend = w.device, w.dtype, w.mode, w.ops_backend or ops_backend
            kv_block_size, max_num_seqs, max_num_batched_tokens = w.kv_block_size, w.max_num_seqs, w.max_num_batched_tokens
        device = device or ("cuda" if torch.cuda.is_available() else "cpu")
        self.config = EngineConfig(model=model, dtype=dtype, device=device, kv_block_size=kv_block_size,
                                   max_num_seqs=max_num_seqs, max_num_batched_tokens=max_num_batched_tokens,
                                   num_kv_blocks=num_kv_blocks, ops_backend=ops_backend, mode=mode, **kwargs)
        self.engine = LLMEngine(self.config)
        self._next_id = 0

    def generate(self, requests: list[dict] | dict, sampling: SamplingParams | list[SamplingParams] | None = None) -> list[RequestOutput]:
        """Requests are processed (images patchified, prompts expanded) and
        queued a step's worth ahead of the scheduler, so that processing runs
        while the launched step is on the device instead of all up front.
        TTFT still counts from this call."""
        import time

        requests, params = batch_args(requests, sampling)
        called = time.perf_counter()
        ids = [str(self._next_id + i) for i in range(len(requests))]
        self._next_id += len(requests)
        ahead = 2 * self.config.max_num_batched_tokens  # prompt tokens kept queued
        added, done = 0, {}
        try:
            while added < len(requests) or self.engine.has_unfinished_requests():
                while added < len(requests) and self.engine.scheduler.num_waiting_tokens() < ahead:
                    req = self.engine.add_request(ids[added], requests[added], params[added])
                    req.arrival_time_s = called
                    added += 1
                for output in self.engine.step():
                    done[output.request_id] = output
        except Exception:
            # a rejected request (or a failed step) fails the call: what is queued must not run in the next one
            for request_id in ids[:added]:
                if request_id not in done:
                    self.engine.abort(request_id)
            raise
        return [done[i] for i in ids]


def batch_args(requests: list[dict] | dict, sampling: SamplingParams | list[SamplingParams] | None
               ) -> tuple[list[dict], list[SamplingParams]]:
    """generate()'s arguments as matched lists: one request or many, one
    sampling setting for all or one each."""
    requests = [requests] if isinstance(requests, dict) else list(requests)
    sampling = sampling or SamplingParams()
    params = sampling if isinstance(sampling, list) else [sampling] * len(requests)
    if len(params) != len(requests):
        raise ValueError(f"{len(params)} sampling params for {len(requests)} requests")
    return requests, params


def _layout(layout):
    from inference.layouts import Layout, load_layout

    return layout if isinstance(layout, Layout) else load_layout(layout)
