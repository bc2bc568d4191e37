"""RouterServer.add_worker against real loopback channels: a peer that is
not a worker is refused and its connection is closed, whatever way the
Hello exchange fails."""
from __future__ import annotations

import pytest

from inference.disagg import protocol as P
from inference.disagg.channel import Server
from inference.layouts import load_layout
from inference.router import server as router_server
from inference.router.server import RouterServer

TOKEN = b"test-token-router"


@pytest.fixture
def opened(monkeypatch):
    """Every channel the router opens, to check that refused ones are closed."""
    channels = []
    real_connect = router_server.connect

    def connect(address, token, *args, **kwargs):
        channels.append(real_connect(address, token, *args, **kwargs))
        return channels[-1]

    monkeypatch.setattr(router_server, "connect", connect)
    return channels


@pytest.mark.parametrize("answer", ["hangs_up", "wrong_role"])
def test_refused_worker_connection_is_closed(opened, answer):
    def on_message(channel, msg):
        if answer == "hangs_up":
            channel.close()
        else:
            channel.send(P.Hello(role="decode", index=0, pid=1))

    peer = Server("127.0.0.1", 0, TOKEN, on_message)
    router = RouterServer(load_layout("local-cpu-1p1d"), TOKEN, host="127.0.0.1", port=0)
    try:
        with pytest.raises(ConnectionError):
            router.add_worker("prefill", peer.address)
        assert len(opened) == 1 and opened[0].closed
        assert router.events.empty()  # nothing joined
    finally:
        router.server.close()
        peer.close()


def test_silent_peer_is_timed_out_logged_and_closed(opened, caplog):
    """A peer that authenticates but never answers Hello cannot hold the router."""
    import threading
    import time

    peer = Server("127.0.0.1", 0, TOKEN, lambda channel, msg: None)  # reads the Hello, says nothing
    router = RouterServer(load_layout("local-cpu-1p1d"), TOKEN, host="127.0.0.1", port=0, hello_timeout_s=0.3)
    errors = []

    def add():
        try:
            router.add_worker("prefill", peer.address)
        except Exception as e:
            errors.append(e)

    t0 = time.monotonic()
    t = threading.Thread(target=add, daemon=True)
    try:
        with caplog.at_level("WARNING", logger="inference.router"):
            t.start()
            t.join(timeout=5)
        assert not t.is_alive(), "add_worker still waits for the silent peer's Hello"
        assert time.monotonic() - t0 < 3
        assert len(errors) == 1 and isinstance(errors[0], ConnectionError) and "no Hello" in str(errors[0])
        assert opened[0].closed and router.events.empty()
        assert any("no Hello" in r.getMessage() for r in caplog.records)
    finally:
        router.server.close()
        peer.close()


def test_client_that_hangs_up_has_its_requests_aborted():
    """Through real sockets: a client's connection closes while its request
    is queued -> the router drops it (no worker is there to release)."""
    import threading
    import time

    from inference.disagg.client import RouterClient

    router = RouterServer(load_layout("local-cpu-1p1d"), TOKEN, host="127.0.0.1", port=0)
    loop = threading.Thread(target=router.serve, daemon=True)
    loop.start()
    try:
        staying, leaving = RouterClient(router.address, TOKEN), RouterClient(router.address, TOKEN)
        staying.channel.send(P.Submit(request_id="s", prompt_token_ids=[1, 2], sampling={"max_tokens": 4}))
        leaving.channel.send(P.Submit(request_id="l", prompt_token_ids=[1, 2], sampling={"max_tokens": 4}))
        deadline = time.monotonic() + 5
        while len(router.router.jobs) < 2 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert set(router.router.jobs) == {"s", "l"}
        leaving.close()
        while "l" in router.router.jobs and time.monotonic() < deadline:
            time.sleep(0.01)
        assert list(router.router.jobs) == ["s"] and list(router.router.queue) == ["s"]
        assert router.router.metrics.counters["aborted_client_gone"] == 1
        staying.close()
    finally:
        router.stop()
        loop.join(timeout=5)
