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
from inference.env import env_int
from inference.prep_ahead import PrepAhead
from inference.sampling import SamplingParams

ADMIT_AHEAD_STEPS = 2  # prompt tokens kept waiting in the scheduler, in steps' token budgets
FIRST_STEP_ENV = "DOCPIPE_FIRST_STEP_TOKENS"  # prompt tokens admitted before a call's first step (A/B runs)


def first_step_tokens(cfg: EngineConfig) -> int:
    """Prompt tokens admitted before a call's first step: half a step's budget unless DOCPIPE_FIRST_STEP_TOKENS
    says otherwise. The device idles until that step is launched, and admitting costs host time (a layout
    page's pixels are uploaded and patched: ~1.5 ms, at times 5-8 ms on the H200's host); the rest is
    admitted while the first step runs."""
    return max(1, env_int(FIRST_STEP_ENV, cfg.max_num_batched_tokens // 2))


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
        # Requests are prepared in order on a background thread (prep_ahead.py) and admitted as
        # they become ready. Before the first step, admission waits for first_step_tokens() of prompt
        # tokens, half a step's worth (or all requests): admitting a sliver at a time staggers admissions (measured on
        # the H200: 256-request decode throughput fell from 31k to 22k tok/s when each step got only
        # its own share), and it stops there: admitting finishes a request on this thread (pixels
        # uploaded and patched on the device, ~1.5 ms a layout page on the H200), so admitting every
        # ready request first held a 64-page batch's first step back ~95 ms. After it, admission keeps
        # ADMIT_AHEAD_STEPS steps' worth waiting (at least the scheduler's prefill hold), which also
        # keeps a large call's pixels off the device until they are needed.
        requests, params = batch_args(requests, sampling)
        engine, cfg = self.engine, self.config
        threaded = cfg.prepare_ahead if cfg.prepare_ahead is not None else cfg.torch_device.type == "cuda"
        prep = PrepAhead(engine.processor, requests, threaded)
        ids, stepped = [], False
        ahead = max(ADMIT_AHEAD_STEPS * cfg.max_num_batched_tokens, cfg.prefill_hold_tokens)
        first = first_step_tokens(cfg)
        done: dict[str, RequestOutput] = {}
        try:
            while len(ids) < len(requests) or engine.has_unfinished_requests():
                if len(ids) < len(requests):  # the waiting queue summed only while admitting
                    # admission pauses at `limit` (a preempted request, back in the queue, may pass it)
                    waiting = engine.scheduler.num_waiting_tokens()
                    limit = ahead if stepped else first
                    while len(ids) < len(requests) and waiting < limit and (
                            prep.ready(len(ids)) or not engine.has_unfinished_requests() or not stepped):
                        try:
                            prompt = prep.get(len(ids))
                        except Exception as exc:
                            exc.add_note(f"request {len(ids)} of this generate() call")
                            raise
                        ids.append(str(self._next_id))
                        self._next_id += 1
                        engine.add_request(ids[-1], prompt, params[len(ids) - 1])
                        waiting += len(prompt.token_ids)
                for output in engine.step():
                    done[output.request_id] = output
                stepped = True
        except BaseException:
            # a rejected request fails the call: the ones already queued must not run in the next one
            for request_id in ids:
                if request_id not in done:
                    engine.abort(request_id)
            raise
        finally:
            prep.close()
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
