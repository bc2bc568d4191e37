"""How the Ray job points VLM actors at PD pools, without Ray: a
disaggregated layout becomes `router://` options for client actors that
take no GPU, the token stays out of every repr, a disaggregated layout with
no router is refused, a `router://` layout takes its token from
$DOCPIPE_TOKEN, and host-local KV transports become node-to-node ones."""
from __future__ import annotations

import dataclasses

import pytest

from docpipe.config import ConvertOptions
from docpipe.ray.actors import actor_resources, router_options
from docpipe.ray.pd import PdPools, RouterEndpoint, needs_pools, network_layout
from inference.disagg.remote import TOKEN_ENV
from inference.layouts import load_layout

TOKEN = "s3cr3t-token-value"


def test_a_disaggregated_layout_sends_actors_to_the_router_without_a_gpu():
    opts = ConvertOptions(backend="vlm", model="m", layout="gpu-prefill-cpu-decode",
                          extra={"vlm_engine": {"max_model_len": 320}})
    assert needs_pools(opts)
    endpoint = RouterEndpoint("10.1.2.3:7000", TOKEN)
    got, router = router_options(opts, endpoint)
    assert got.layout == "router://10.1.2.3:7000" and router is endpoint and got.extra == opts.extra
    assert actor_resources(got, cluster_gpus=8).num_gpus == 0
    assert actor_resources(opts, cluster_gpus=8).num_gpus == 1  # the layout's cuda prefill, for comparison
    pools = PdPools("m", load_layout("gpu-prefill-cpu-decode"), token=TOKEN)
    for shown in (repr(endpoint), repr(got), repr(pools)):
        assert TOKEN not in shown


def test_without_a_router_a_disaggregated_layout_is_refused_and_others_pass():
    with pytest.raises(ValueError, match="PdPools"):
        router_options(ConvertOptions(backend="vlm", model="m", layout="local-cpu-1p1d"), None)
    for opts in (ConvertOptions(backend="vlm", model="m", layout="single-gpu"),
                 ConvertOptions(backend="vlm", model="replay:/answers", layout="local-cpu-1p1d")):
        assert not needs_pools(opts) and router_options(opts, None) == (opts, None)


def test_a_router_layout_takes_the_token_from_the_environment(monkeypatch):
    opts = ConvertOptions(backend="vlm", model="m", layout="router://head:7000")
    monkeypatch.delenv(TOKEN_ENV, raising=False)
    with pytest.raises(ValueError, match=TOKEN_ENV):
        router_options(opts, None)
    monkeypatch.setenv(TOKEN_ENV, TOKEN)
    got, router = router_options(opts, None)
    assert got == opts and router == RouterEndpoint("head:7000", TOKEN)
    with pytest.raises(ValueError, match="router://host:port"):
        router_options(dataclasses.replace(opts, layout="router://head"), None)


@pytest.mark.parametrize("transport,fallback,want", [("shm", "tcp", "tcp"), ("cuda-ipc", "shm", "tcp"),
                                                     ("shm", "rdma", "rdma"), ("tcp", None, "tcp"),
                                                     ("rdma", "tcp", "rdma")])
def test_kv_goes_node_to_node(transport, fallback, want):
    layout = load_layout("local-cpu-1p1d")
    layout.transfer = dataclasses.replace(layout.transfer, transport=transport, fallback=fallback)
    got = network_layout(layout)
    assert got.transfer.transport == want
    assert layout.transfer.transport == transport  # the caller's layout is left as it was
