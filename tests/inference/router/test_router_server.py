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
