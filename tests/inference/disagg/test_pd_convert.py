"""fp32 prefill -> bf16 decode with a different KV block size (16 -> 32),
as processes over shm: token-identical to the in-process PD reference (same
conversion, no processes), and that reference checked against the monolithic
bf16 run: logits within a few bf16 ulps while the tokens agree, and every
token that differs is a near-tie in the monolithic run."""
from __future__ import annotations

import dataclasses

from inference import LLM, SamplingParams
from inference.disagg.cluster import Cluster
from inference.disagg.reference import pd_reference
from inference.layouts import load_layout

from test_pd_cluster import ENGINE_KW, requests, run

SP = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True)
BF16_TOL = 0.03  # ~4 bf16 ulps at the tiny model's |logit| ~ 1.4


def test_fp32_prefill_bf16_decode_matches_reference(tiny_ckpt):
    layout = load_layout("local-cpu-1p1d")
    layout.workers = [dataclasses.replace(w, dtype="bfloat16", kv_block_size=32) if w.role == "decode" else w
                      for w in layout.workers]
    with Cluster(tiny_ckpt, layout, engine_kw=ENGINE_KW) as cluster:
        client = cluster.client()
        got = run(client, "conv", SP)
        client.close()

    with_logits = dataclasses.replace(SP, return_logits=True)
    ref = pd_reference(tiny_ckpt, requests(), with_logits, ("float32", 16), ("bfloat16", 32), **ENGINE_KW)
    assert [got[f"conv-{i}"].token_ids for i in range(5)] == [r.token_ids for r in ref]

    mono = LLM(tiny_ckpt, dtype="bfloat16", device="cpu", **ENGINE_KW).generate(requests(), with_logits)
    for r, m in zip(ref, mono):
        n = next((k for k, (a, b) in enumerate(zip(r.token_ids, m.token_ids)) if a != b), len(r.token_ids))
        assert n >= 1  # the first token comes from the fp32 prefill; greedy agrees on it here
        # decode logits rows start at output 1 (output 0 was sampled by prefill)
        assert (r.logits[: n - 1] - m.logits[1:n]).abs().max().item() <= BF16_TOL
        if n < len(r.token_ids):
            row = m.logits[n]
            assert (row[m.token_ids[n]] - row[r.token_ids[n]]).item() <= BF16_TOL  # a near-tie, not an error
