"""The local-cpu-1p1d layout as real processes (prefill, decode, router) is
token-identical to the monolithic engine with greedy sampling, over shm and
tcp, also with sampling that reads the prompt (repetition penalty, n-gram
bans) through the reservation fast path; a worker killed mid-run loses and duplicates nothing; a worker answers
a malformed message with an Error and refuses a wrong token, then goes on;
a client that hangs up mid-run leaves no KV blocks held on either side."""
from __future__ import annotations

import dataclasses
import time

import numpy as np
import pytest
from PIL import Image

from inference import LLM, SamplingParams
from inference.disagg import protocol as P
from inference.disagg.channel import HEADER, MAGIC, VERSION, connect
from inference.disagg.cluster import Cluster
from inference.layouts import load_layout
from inference.transfer.auth import AuthError

ENGINE_KW = dict(num_kv_blocks=96, max_model_len=768, max_num_batched_tokens=512)
SHORT = SamplingParams(temperature=0.0, max_tokens=12, ignore_eos=True)
LONG = SamplingParams(temperature=0.0, max_tokens=64, ignore_eos=True)  # long enough to kill a worker mid-run
# as the product's block requests (no_repeat_ngram_size=100 there): decode needs the expanded prompt
PENALTY = SamplingParams(temperature=0.0, max_tokens=24, ignore_eos=True, repetition_penalty=1.3, no_repeat_ngram_size=3)


def requests(n: int = 5, seed: int = 0) -> list[dict]:
    rng = np.random.default_rng(seed)
    out = []
    for i in range(n):
        req = {"prompt_token_ids": [5 + i, 6, 301, 300, 302, 7 + i, 8]}
        if i % 3 != 2:  # a text-only request in the mix
            req["images"] = [Image.fromarray(rng.integers(0, 256, (56 * (1 + i % 2), 84, 3), dtype=np.uint8))]
        else:
            req["prompt_token_ids"] = [9, 10, 11 + i]
        out.append(req)
    return out


@pytest.fixture(scope="module")
def monolithic():
    llm = LLM("dummy:tiny", dtype="float32", device="cpu", **ENGINE_KW)
    return {name: [o.token_ids for o in llm.generate(requests(), sp)] for name, sp in (("short", SHORT), ("long", LONG), ("penalty", PENALTY))}


def layout_over(transport: str):
    layout = load_layout("local-cpu-1p1d")
    layout.transfer = dataclasses.replace(layout.transfer, transport=transport, fallback=None)
    return layout


def run(client, prefix: str, sp: SamplingParams, kill=None) -> dict:
    ids = [f"{prefix}-{i}" for i in range(len(requests()))]
    for rid, req in zip(ids, requests()):
        client.submit(rid, req, sp)
    if kill is not None:
        kill()
    return client.wait(ids, timeout_s=120)


def _wait_first_tokens(client, n: int) -> None:
    """Until n more first tokens than before are out (prefills done, decodes running)."""
    import json
    base = json.loads(client.metrics())["ttft_s"]["n"]
    deadline = time.monotonic() + 60
    while json.loads(client.metrics())["ttft_s"]["n"] < base + n:
        assert time.monotonic() < deadline, "prefills did not finish"
        time.sleep(0.02)


def _malformed_and_wrong_token(cluster: Cluster) -> None:
    address = cluster.info[("prefill", 0)]["address"]
    with pytest.raises(AuthError):
        connect(address, b"not-the-token")
    ch = connect(address, cluster.token.encode())
    body = b'{"type": "PrefillRequest", "fields": {"request_id": 7}}'
    ch.sock.sendall(HEADER.pack(MAGIC, VERSION, len(body), 0, 0) + body)
    reply = ch.recv()
    assert isinstance(reply, P.Error) and "malformed message" in reply.error
    ch.send(P.PrefillRequest(request_id="x@0", prompt_token_ids=[], sampling={"max_tokens": 2}))
    reply = ch.recv()  # a well-formed but impossible request fails alone
    assert isinstance(reply, P.PrefillFailed) and "empty prompt" in reply.error
    ch.close()


def _metrics(client) -> dict:
    import json
    return json.loads(client.metrics())


def _settled_free_blocks(client, timeout_s: float = 15.0) -> dict:
    """Free blocks per worker once nothing is in flight and two reads agree: a
    prefill worker frees a request's blocks on the decode side's ACK, a little
    after the request's output reached the client."""
    deadline, last = time.monotonic() + timeout_s, None
    while True:
        m = _metrics(client)
        now = {name: w["free_blocks"] for name, w in m["workers"].items()}
        if now == last and m["gauges"]["inflight_requests"] == 0:
            return now
        assert time.monotonic() < deadline, f"free blocks never settled: {now}, {m['gauges']}"
        last = now
        time.sleep(0.3)


def _gone_client_leaks_nothing(cluster: Cluster, client) -> None:
    """A client hangs up with requests at every stage: the router drops them and
    both workers get all their KV blocks back. A request released while its KV may
    still be on the way keeps its decode blocks quarantined until the transfer lease
    runs out (decode_worker.py), so the wait is the lease and then some."""
    full = _settled_free_blocks(client)
    leaving = cluster.client()
    for i, req in enumerate(requests()):
        leaving.submit(f"gone-{i}", req, LONG)
    _wait_first_tokens(client, 2)
    leaving.close()
    deadline = time.monotonic() + cluster.layout.transfer.lease_s + 30
    while True:
        m = _metrics(client)
        now = {name: w["free_blocks"] for name, w in m["workers"].items()}
        if now == full and m["gauges"]["inflight_requests"] == 0:
            break
        assert time.monotonic() < deadline, f"blocks not freed after the client left: {now} != {full}, {m['gauges']}"
        time.sleep(0.05)
    assert m["counters"]["aborted_client_gone"] >= 1


@pytest.mark.parametrize("transport, victim", [("shm", "decode"), ("tcp", "prefill")])
def test_pd_matches_monolithic_and_survives_a_killed_worker(transport, victim, monolithic):
    with Cluster("dummy:tiny", layout_over(transport), engine_kw=ENGINE_KW) as cluster:
        client = cluster.client()
        got = run(client, "short", SHORT)
        assert [got[f"short-{i}"].token_ids for i in range(5)] == monolithic["short"]
        got = run(client, "penalty", PENALTY)
        assert [got[f"penalty-{i}"].token_ids for i in range(5)] == monolithic["penalty"]
        counters = _metrics(client)["counters"]  # every request so far reserved its decode blocks, none fell back
        assert counters["reservations"] == 10 and counters.get("reservation_fallbacks", 0) == 0
        assert counters.get("pushed_at_prefill", 0) + counters.get("pushed_late", 0) >= 1
        assert sum(r.num_retries for r in got.values()) == 0

        _malformed_and_wrong_token(cluster)
        _gone_client_leaks_nothing(cluster, client)

        def kill():
            if victim == "decode":
                _wait_first_tokens(client, 1)  # KV has moved and decoding is under way
            cluster.kill(victim)

        got = run(client, "long", LONG, kill)
        assert [got[f"long-{i}"].token_ids for i in range(5)] == monolithic["long"]
        assert all(client.deliveries[f"long-{i}"] == 1 for i in range(5))  # nothing duplicated
        assert sum(r.num_retries for r in got.values()) >= 1 and cluster.restarts == 1
        client.close()
