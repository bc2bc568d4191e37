"""In-process reference of the disaggregated path (no processes, no sockets).

pd_reference() runs each request's prefill on one engine (max_tokens=1,
keep_kv), converts its KV blocks into the decode engine's layout with the
transfer engine's own convert.repack (dtype, block size), writes them into
blocks pre-allocated by add_prefilled_request, and decodes them together on a
second engine. What the PD workers, router and transports produce must be
token-identical to this; with equal dtypes and block sizes it is also the
monolithic engine's output.
"""
from __future__ import annotations

import dataclasses

import torch

from inference.config import EngineConfig
from inference.engine.engine import LLMEngine
from inference.transfer import PoolSpec
from inference.transfer.convert import repack


def pd_reference(model: str, requests: list[dict], sampling, prefill: tuple[str, int], decode: tuple[str, int],
                 device: str = "cpu", **engine_kw) -> list:
    """prefill / decode: (dtype, kv_block_size) of each side. Returns RequestOutputs in input order."""
    pre = LLMEngine(EngineConfig(model=model, dtype=prefill[0], kv_block_size=prefill[1], device=device, **engine_kw))
    dec = LLMEngine(EngineConfig(model=model, dtype=decode[0], kv_block_size=decode[1], device=device, **engine_kw))
    dst = PoolSpec.of_pool(dec.kv_pool)
    first_only = dataclasses.replace(sampling, max_tokens=1)
    done = {}
    for i, request in enumerate(requests):
        rid = str(i)
        pre.add_request(rid, request, first_only, keep_kv=True)
        while pre.has_unfinished_requests():
            for out in pre.step():
                prompt_ids = list(pre.scheduler.held[rid].prompt.token_ids)
                ids = dec.add_prefilled_request(rid, out.num_prompt_tokens, out.first_token, out.rope_delta,
                                                sampling, prompt_ids)
                with torch.no_grad():
                    dec.kv_pool[torch.tensor(ids)] = repack(pre.kv_pool, out.block_ids, out.num_computed_tokens, dst)
                pre.release(rid)
                for finished in dec.kv_ready(rid):
                    done[finished.request_id] = finished
    while dec.has_unfinished_requests():
        for out in dec.step():
            done[out.request_id] = out
    return [done[str(i)] for i in range(len(requests))]
