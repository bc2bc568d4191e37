"""RouterLLM on a router it does not own (a local Cluster of local-cpu-1p1d):
greedy tokens, with and without images, are the monolithic engine's; two
RouterLLMs share one router without their request ids colliding, and
closing one leaves the router serving the other; a request without token ids
sends nothing; no token at all is a clear error."""
from __future__ import annotations

import json

import numpy as np
import pytest
from PIL import Image

from inference import LLM, SamplingParams
from inference.disagg import remote
from inference.disagg.cluster import Cluster
from inference.disagg.remote import RouterLLM

ENGINE_KW = dict(num_kv_blocks=96, max_model_len=768, max_num_batched_tokens=512)
SP = SamplingParams(temperature=0.0, max_tokens=10, ignore_eos=True)


def requests() -> list[dict]:
    rng = np.random.default_rng(1)
    image = Image.fromarray(rng.integers(0, 256, (56, 84, 3), dtype=np.uint8))
    return [{"prompt_token_ids": [5, 6, 301, 300, 302, 7, 8], "images": [image]},
            {"prompt_token_ids": [9, 10, 11]},
            {"prompt_token_ids": [12, 13, 14, 15, 16]}]


@pytest.fixture(scope="module")
def cluster():
    with Cluster("dummy:tiny", "local-cpu-1p1d", engine_kw=ENGINE_KW) as c:
        yield c


def test_router_llm_matches_the_monolithic_engine_and_shares_the_router(cluster):
    want = [o.token_ids for o in LLM("dummy:tiny", dtype="float32", device="cpu", **ENGINE_KW).generate(requests(), SP)]
    first, second = RouterLLM(cluster.router_address, cluster.token, timeout_s=120), None
    try:
        second = RouterLLM(cluster.router_address, cluster.token, timeout_s=120)
        out = first.generate(requests(), SP)
        assert [o.token_ids for o in out] == want
        assert all(o.finish_reason == "length" and o.num_prompt_tokens > 0 for o in out)
        # a second client numbers its requests too: the router would reject a repeated id as a duplicate
        first.close()
        assert [o.token_ids for o in second.generate(requests()[1:], SP)] == want[1:]
    finally:
        first.close()
        if second is not None:
            second.close()


def test_untokenized_request_sends_nothing(cluster):
    with RouterLLM(cluster.router_address, cluster.token, timeout_s=60) as llm:
        before = _submitted(llm)
        with pytest.raises(ValueError, match="prompt_token_ids"):
            llm.generate([requests()[1], {"prompt": "text only"}], SP)
        assert _submitted(llm) == before  # the valid first request was not sent either


def _submitted(llm: RouterLLM) -> int:
    return json.loads(llm.metrics())["counters"].get("submitted", 0)


def test_missing_token_is_a_clear_error(monkeypatch):
    monkeypatch.delenv(remote.TOKEN_ENV, raising=False)
    with pytest.raises(ValueError, match=remote.TOKEN_ENV):
        RouterLLM("127.0.0.1:1")
