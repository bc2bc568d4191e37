"""Block-id fields (Allocated.block_ids, TransferRequest.dst_block_ids) on
the wire: runs [[first, count], ...] (a plain id list when runs would not be
shorter), decoded into BlockIds equal to the ids sent; malformed runs are
ProtocolErrors, answered with an Error reply while the connection goes on."""
from __future__ import annotations

import json

import pytest

from inference.disagg import protocol as P
from inference.disagg.channel import HEADER, MAGIC, VERSION, Server, connect
from inference.transfer.blockids import MAX_IDS, BlockIds

TOKEN = b"test-token-runs"


def _wire(msg) -> object:
    body, blobs = P.encode_message(msg)
    assert not blobs
    return json.loads(body)["fields"]


@pytest.mark.parametrize("ids, wire", [
    (list(range(7, 7 + 4096)), [[7, 4096]]),  # one fresh allocation: one pair, whatever its length
    (list(range(100)) + list(range(500, 600)) + [3], [[0, 100], [500, 100], [3, 1]]),
    ([0, 1, 2, 3, 9, 10, 11, 20], [0, 1, 2, 3, 9, 10, 11, 20]),  # 3 runs for 8 ids: shorter than 4 ids a run
    (list(range(4095, -1, -1)), list(range(4095, -1, -1))),  # no two ids in a run: the plain list
    ([], []),
])
def test_ids_travel_as_runs_and_come_back_equal(ids, wire):
    for msg, name in ((P.TransferRequest(request_id="a@0", dst_address="h:1", dst_block_ids=ids), "dst_block_ids"),
                      (P.Allocated(request_id="a@0", ok=True, block_ids=ids, num_free_blocks=3), "block_ids")):
        assert _wire(msg)[name] == wire
        back = P.decode_message(*P.encode_message(msg))
        got = getattr(back, name)
        assert type(got) is BlockIds and got.tolist() == ids and back == msg


def test_messages_built_from_lists_or_ranges_hold_block_ids():
    a = P.Allocated(request_id="a", ok=True, block_ids=[5, 6, 7, 9])
    assert type(a.block_ids) is BlockIds and a.block_ids.runs == ((5, 3), (9, 1)) and a.block_ids == [5, 6, 7, 9]
    t = P.TransferRequest(request_id="a", dst_address="h:1", dst_block_ids=range(3, 8))
    assert t.dst_block_ids.runs == ((3, 5),)
    assert P.Allocated(request_id="a", ok=False).block_ids == []
    with pytest.raises(ValueError, match="Allocated.block_ids"):
        P.Allocated(request_id="a", ok=True, block_ids=[1, -2])


def test_runs_that_continue_each_other_decode_joined():
    body = json.dumps({"type": "TransferRequest", "fields": {
        "request_id": "a", "dst_address": "h:1", "dst_block_ids": [[0, 2], [2, 3], [9, 1]]}}).encode()
    assert P.decode_message(body, []).dst_block_ids.runs == ((0, 5), (9, 1))


def test_a_plain_id_list_is_read():
    body = json.dumps({"type": "Allocated", "fields": {"request_id": "a", "ok": True, "block_ids": [4, 5, 1]}}).encode()
    assert P.decode_message(body, []).block_ids.runs == ((4, 2), (1, 1))


@pytest.mark.parametrize("ids, error", [
    ([[1]], "not a \\[first, count\\] pair"),
    ([[1, 2, 3]], "not a \\[first, count\\] pair"),
    ([[1, "2"]], "not a \\[first, count\\] pair"),
    ([[1, 2.0]], "not a \\[first, count\\] pair"),
    ([[1, True]], "not a \\[first, count\\] pair"),
    ([[None, 2]], "not a \\[first, count\\] pair"),
    ([[1, 2], 5], "not a \\[first, count\\] pair"),
    ([[1, 2], {"$blob": 0}], "not a \\[first, count\\] pair"),
    ([[-1, 2]], "non-negative"),
    ([[1, 0]], "empty"),
    ([[1, 2], [3, -4]], "empty"),
    ([[0, MAX_IDS + 1]], "more than"),
    ([[0, MAX_IDS], [MAX_IDS + 5, 1]], "more than"),
    ([1, -2], "non-negative"),  # plain list: ints, yet not block ids
    ([1, [2, 3]], r"block_ids\[1\]: expected an int"),
    ({"first": 1}, "expected a list"),
    ("0-4", "expected a list"),
])
def test_malformed_block_ids_are_protocol_errors(ids, error):
    body = json.dumps({"type": "Allocated", "fields": {"request_id": "a", "ok": True, "block_ids": ids}}).encode()
    with pytest.raises(P.ProtocolError, match=error) as e:
        P.decode_message(body, [b"x"])
    assert "Allocated.block_ids" in str(e.value)
    body = json.dumps({"type": "TransferRequest", "fields": {"request_id": "a", "dst_address": "h:1",
                                                             "dst_block_ids": ids}}).encode()
    with pytest.raises(P.ProtocolError, match="TransferRequest.dst_block_ids"):
        P.decode_message(body, [b"x"])


def test_malformed_runs_get_an_error_reply_and_the_connection_goes_on():
    got = []
    server = Server("127.0.0.1", 0, TOKEN, lambda ch, msg: (got.append(msg), ch.send(P.Hello(role="echo"))))
    ch = connect(server.address, TOKEN)
    try:
        body = json.dumps({"type": "TransferRequest", "fields": {"request_id": "a", "dst_address": "h:1",
                                                                 "dst_block_ids": [[3, -1]]}}).encode()
        ch.sock.sendall(HEADER.pack(MAGIC, VERSION, len(body), 0, 0) + body)
        reply = ch.recv()
        assert isinstance(reply, P.Error) and "TransferRequest.dst_block_ids" in reply.error and not got
        ch.send(P.TransferRequest(request_id="b", dst_address="h:1", dst_block_ids=list(range(10, 20))))
        assert isinstance(ch.recv(), P.Hello)
        assert got == [P.TransferRequest(request_id="b", dst_address="h:1", dst_block_ids=BlockIds.range(10, 10))]
    finally:
        ch.close()
        server.close()
