"""Control messages and the authenticated channel: round trips, malformed
messages and frames answered with an Error (connection / server survive),
wrong token refused."""
from __future__ import annotations

import json
import socket
import struct
import threading

import pytest

from inference.disagg import protocol as P
from inference.disagg.channel import HEADER, MAGIC, VERSION, Server, connect
from inference.transfer.auth import AuthError, client_handshake

TOKEN = b"test-token-pd"


def test_round_trip_with_blobs():
    msg = P.Submit(request_id="r1", prompt_token_ids=[1, 2, 3], sampling={"temperature": 0.0},
                   images=[b"\x00\x01" * 10, b"xyz"], image_sizes=[[4, 5], [1, 1]])
    body, blobs = P.encode_message(msg)
    assert b"\\u0000" not in body and len(blobs) == 2  # pixels travel as blobs, not JSON
    assert P.decode_message(body, blobs) == msg


@pytest.mark.parametrize("body, error", [
    (b"not json", "not JSON"),
    (json.dumps({"type": "Nope", "fields": {}}).encode(), "unknown message type"),
    (json.dumps({"type": "Release", "fields": {}}).encode(), "missing field"),
    (json.dumps({"type": "Release", "fields": {"request_id": 5}}).encode(), "expected str"),
    (json.dumps({"type": "Allocated", "fields": {"request_id": "a", "ok": True, "block_ids": [1, "2"]}}).encode(), "expected an int"),
    (json.dumps({"type": "Release", "fields": {"request_id": "a", "evil": 1}}).encode(), "unknown fields"),
    (json.dumps({"type": "Submit", "fields": {"request_id": "a", "prompt_token_ids": [], "sampling": {},
                                              "images": [{"$blob": 3}]}}).encode(), "bad blob"),
])
def test_malformed_messages_are_protocol_errors(body, error):
    with pytest.raises(P.ProtocolError, match=error):
        P.decode_message(body, [])


@pytest.fixture
def echo_server():
    got = []

    def on_message(channel, msg):
        got.append(msg)
        channel.send(P.Hello(role="echo", index=len(got)))

    server = Server("127.0.0.1", 0, TOKEN, on_message)
    yield server, got
    server.close()


def _raw(server: Server) -> socket.socket:
    host, port = server.address.split(":")
    sock = socket.create_connection((host, int(port)), timeout=5)
    client_handshake(sock, TOKEN)
    return sock


def test_bad_message_gets_error_reply_and_connection_goes_on(echo_server):
    server, got = echo_server
    ch = connect(server.address, TOKEN)
    body = json.dumps({"type": "Release", "fields": {"request_id": 42}}).encode()
    ch.sock.sendall(HEADER.pack(MAGIC, VERSION, len(body), 0, 0) + body)
    reply = ch.recv()
    assert isinstance(reply, P.Error) and "expected str" in reply.error
    ch.send(P.Release(request_id="ok"))
    assert isinstance(ch.recv(), P.Hello) and got == [P.Release(request_id="ok")]
    ch.close()


def test_bad_frame_closes_that_connection_only(echo_server):
    server, got = echo_server
    sock = _raw(server)
    sock.sendall(b"JUNK" + bytes(HEADER.size - 4))
    ch = connect(server.address, TOKEN)  # another connection to the same server still works
    ch.send(P.Release(request_id="x"))
    assert isinstance(ch.recv(), P.Hello)
    data = sock.recv(65536)
    assert b"malformed frame" in data
    sock.settimeout(5)
    assert sock.recv(1) == b""  # closed by the server
    oversize = _raw(server)
    oversize.sendall(HEADER.pack(MAGIC, VERSION, 1 << 30, 0, 0))
    assert b"too large" in oversize.recv(65536)
    ch.close()


def test_wrong_token_is_refused(echo_server):
    server, got = echo_server
    with pytest.raises(AuthError):
        connect(server.address, b"wrong-token")
    ch = connect(server.address, TOKEN)
    ch.send(P.Release(request_id="after"))
    assert isinstance(ch.recv(), P.Hello)
    assert got == [P.Release(request_id="after")]
    ch.close()


def test_silent_peer_cannot_hold_the_listener():
    server = Server("127.0.0.1", 0, TOKEN, lambda ch, m: ch.send(m), handshake_timeout_s=0.3)
    host, port = server.address.split(":")
    idle = socket.create_connection((host, int(port)))  # never answers the handshake
    ch = connect(server.address, TOKEN)
    ch.send(P.Shutdown(reason="ping"))
    assert ch.recv() == P.Shutdown(reason="ping")
    idle.settimeout(5)
    assert idle.recv(64).startswith(b"DPAU1")
    done = threading.Event()
    threading.Thread(target=lambda: (idle.recv(64), done.set()), daemon=True).start()
    assert done.wait(5)  # closed after the handshake timeout
    ch.close()
    server.close()


def test_blob_lengths_must_add_up(echo_server):
    server, _ = echo_server
    sock = _raw(server)
    body = json.dumps({"type": "Release", "fields": {"request_id": "a"}}).encode()
    sock.sendall(HEADER.pack(MAGIC, VERSION, len(body), 1, 10) + body + struct.pack("!Q", 3) + b"abc")
    assert b"do not add up" in sock.recv(65536)
