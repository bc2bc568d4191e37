"""Prefill/decode pools as Ray actors (`docpipe.ray.pd.PdPools`) on the
local-cpu-1p1d layout with KV over tcp: greedy tokens through the router are
the monolithic engine's."""
from __future__ import annotations

import dataclasses

import pytest

ray = pytest.importorskip("ray", reason="the ray extra is not installed (pip install 'docpipe[ray]')")

from inference import LLM, SamplingParams  # noqa: E402
from inference.layouts import load_layout  # noqa: E402

pytestmark = [pytest.mark.ray, pytest.mark.usefixtures("ray_session")]
ENGINE_KW = dict(num_kv_blocks=96, max_model_len=768, max_num_batched_tokens=512)
SP = SamplingParams(temperature=0.0, max_tokens=8, ignore_eos=True)
REQUESTS = [{"prompt_token_ids": [5 + i, 6, 7, 8 + i]} for i in range(3)]


def test_pd_pools_on_ray_generate_the_monolithic_tokens():
    from docpipe.ray.pd import PdPools

    want = [o.token_ids for o in LLM("dummy:tiny", dtype="float32", device="cpu", **ENGINE_KW).generate(REQUESTS, SP)]
    layout = load_layout("local-cpu-1p1d")
    layout.transfer = dataclasses.replace(layout.transfer, transport="tcp", fallback=None)  # node to node
    pools = PdPools("dummy:tiny", layout, engine_kw=ENGINE_KW, num_cpus_per_actor=0.5).start()
    try:
        assert sorted(pools.addresses) == [("decode", 0), ("prefill", 0)]
        client = pools.client()
        ids = [f"r{i}" for i in range(len(REQUESTS))]
        for rid, req in zip(ids, REQUESTS):
            client.submit(rid, req, SP)
        got = client.wait(ids, timeout_s=120)
        assert [list(got[r].token_ids) for r in ids] == want
        assert pools.watch() == 0  # nobody restarted: addresses unchanged
        client.close()
    finally:
        pools.stop()
