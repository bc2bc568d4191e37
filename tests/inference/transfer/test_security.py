"""Listener security: loopback by default, HMAC auth, malformed frames."""
import logging
import socket
import struct

import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferError, TransferMeta, select_transport
from inference.transfer import wire
from inference.transfer.auth import AuthError, client_handshake

from transfer_peers import TOKEN, random_pool

SPEC = PoolSpec(8, 2, 16, 2, 32, "float32")


@pytest.fixture
def receiver():
    t = select_transport("tcp")
    rx = t.receiver_cls(t.receiver_cls.allocate_pool(SPEC), TransferConfig(token=TOKEN, timeout_s=2))
    rx.start()
    yield rx
    rx.close()


def _connect(rx) -> socket.socket:
    host, port = rx.address.rsplit(":", 1)
    return socket.create_connection((host, int(port)), timeout=5)


def _authed(rx) -> socket.socket:
    s = _connect(rx)
    client_handshake(s, TOKEN.encode())
    wire.send_frame(s, wire.HELLO, {"transport": "tcp", "spec": SPEC.to_dict()})
    assert wire.recv_frame(s, 0)[0] == wire.HELLO
    return s


def _works(rx) -> None:
    """A good sender still gets through: the listener survived."""
    tx = select_transport("tcp").sender_cls(random_pool(SPEC), TransferConfig(token=TOKEN))
    tx.connect(rx.address)
    assert tx.send(TransferMeta("ok", [1], [2], 16, 0, 0)).wait(5) == "acked"
    assert rx.recv(5).request_id == "ok"
    tx.close()


def test_binds_loopback_by_default(receiver):
    assert receiver.address.startswith("127.0.0.1:")


def test_wrong_token_is_refused_and_logged(receiver, caplog):
    tx = select_transport("tcp").sender_cls(random_pool(SPEC), TransferConfig(token="not-the-token"))
    with caplog.at_level(logging.WARNING, logger="inference.transfer"):
        with pytest.raises(AuthError, match="token mismatch"):
            tx.connect(receiver.address)
    assert any("refused transfer peer 127.0.0.1" in r.getMessage() for r in caplog.records)
    _works(receiver)


def test_token_from_environment(receiver, monkeypatch):
    monkeypatch.setenv("DOCPIPE_TOKEN", TOKEN)
    tx = select_transport("tcp").sender_cls(random_pool(SPEC), TransferConfig())
    tx.connect(receiver.address)
    tx.close()


def test_missing_token_is_a_clear_error(monkeypatch):
    monkeypatch.delenv("DOCPIPE_TOKEN", raising=False)
    with pytest.raises(TransferError, match="DOCPIPE_TOKEN"):
        TransferConfig().resolved_token()


def test_garbage_before_auth_is_refused(receiver):
    s = _connect(receiver)
    s.recv(64)
    s.sendall(b"GET / HTTP/1.1\r\n" * 8)
    assert s.recv(2) == b"NO"
    s.close()
    _works(receiver)


@pytest.mark.parametrize("frame", [
    b"XXXX" + bytes(16),  # bad magic
    struct.pack("!4sBBHIQ", b"DPKV", 9, 2, 0, 0, 0),  # bad version
    struct.pack("!4sBBHIQ", b"DPKV", 1, 77, 0, 0, 0),  # unknown kind
    struct.pack("!4sBBHIQ", b"DPKV", 1, 3, 0, 5, 0) + b"{oops",  # JSON broken
    struct.pack("!4sBBHIQ", b"DPKV", 1, 2, 0, 2, 1 << 40) + b"{}",  # payload larger than the pool
])
def test_malformed_frame_gets_error_and_listener_lives(receiver, frame):
    s = _authed(receiver)
    s.sendall(frame)
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ERROR and "malformed frame" in hdr["error"]
    s.close()
    _works(receiver)


def test_data_outside_the_pool_is_rejected(receiver):
    s = _authed(receiver)
    wire.send_frame(s, wire.DATA, {"seq": 1, "segs": [[SPEC.pool_bytes - 4, 8]]}, [bytes(8)])
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ERROR and "outside" in hdr["error"]
    _works(receiver)


def test_bad_meta_is_nacked_not_fatal(receiver):
    s = _authed(receiver)
    wire.send_frame(s, wire.META, {"seq": 4, "meta": {"request_id": "x"}})
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ACK and hdr["ok"] is False and "lacks field" in hdr["error"]
    meta = TransferMeta("far", [0], [SPEC.num_blocks + 3], 4, 0, 0).to_dict()
    wire.send_frame(s, wire.META, {"seq": 5, "meta": meta})
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ACK and hdr["ok"] is False and "outside" in hdr["error"]
    s.close()


def test_meta_in_the_last_data_frame_lands_then_acks(receiver):
    """tcp's last DATA frame carries the META: bytes land first, a bad META is
    NACKed (bytes landed but nothing delivered), the connection goes on."""
    s = _authed(receiver)
    block = torch.arange(SPEC.block_bytes, dtype=torch.int32).to(torch.uint8)
    meta = TransferMeta("in-data", [0], [3], 16, 7, 0).to_wire()
    wire.send_frame(s, wire.DATA, {"seq": 6, "segs": [[3 * SPEC.block_bytes, SPEC.block_bytes]], "meta": meta},
                    [block.numpy()])
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ACK and hdr == {"seq": 6, "ok": True}
    got = receiver.recv(5)
    assert got.request_id == "in-data" and got.first_token_id == 7
    assert torch.equal(receiver.pool[3].reshape(-1).view(torch.uint8), block)
    wire.send_frame(s, wire.DATA, {"seq": 7, "segs": [[0, 4]], "meta": {"request_id": "x"}}, [bytes(4)])
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ACK and hdr["ok"] is False and "lacks field" in hdr["error"]
    assert receiver.recv(0) is None
    s.close()
    _works(receiver)


def test_metas_frame_acks_each_item_in_one_acks_frame(receiver):
    """A group's METAs in one METAS frame (common fields once): every item checked and delivered
    as a META would be, a bad one NACKed alone, one ACKS frame answers them all in order."""
    s = _authed(receiver)
    good = [TransferMeta(f"g{i}", [i], [i], 4, i, 0).to_wire() for i in range(2)]
    far = TransferMeta("far", [0], [SPEC.num_blocks + 3], 4, 0, 0).to_wire()
    items = [{"seq": 10, "meta": good[0]}, {"seq": 11, "meta": far}, {"seq": 12, "meta": good[1]}]
    wire.send_frame(s, wire.METAS, {"items": items, "common": 1})
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ACKS and [(a["seq"], a["ok"]) for a in hdr["items"]] == [(10, True), (11, False), (12, True)]
    assert "outside" in hdr["items"][1]["error"]
    assert [receiver.recv(5).request_id for _ in range(2)] == ["g0", "g1"] and receiver.recv(0) is None
    s.close()
    _works(receiver)


@pytest.mark.parametrize("header", [{}, {"items": []}, {"items": "x"}, {"items": [1]},
                                    {"items": [{"seq": 1}] * (wire.MAX_GROUP_ITEMS + 1)}])
def test_malformed_metas_frame_ends_the_connection_not_the_listener(receiver, header):
    s = _authed(receiver)
    wire.send_frame(s, wire.METAS, header)
    kind, hdr, _ = wire.recv_frame(s, 0)
    assert kind == wire.ERROR and "METAS" in hdr["error"]
    s.close()
    _works(receiver)
