"""The codec's fast path for flat lists (block ids, token ids): same
messages and same errors as the per-element path, blobs inside lists still
found, and a 4096-id message no longer costs a call per id."""
from __future__ import annotations

import json

import pytest

from inference.disagg import protocol as P


def test_long_id_lists_round_trip_unchanged():
    msg = P.TransferRequest(request_id="a@0", dst_address="h:1", dst_block_ids=list(range(7, 7 + 4096)) + [3, 1])
    body, blobs = P.encode_message(msg)
    back = P.decode_message(body, blobs)
    assert back == msg and back.dst_block_ids is not msg.dst_block_ids and not blobs


@pytest.mark.parametrize("ids", [[1, True], [1, 2.0], [1, None], [1, [2]], [1, {"$blob": 0}]])
def test_non_ints_in_an_int_list_are_refused(ids):
    body = json.dumps({"type": "Allocated", "fields": {"request_id": "a", "ok": True, "block_ids": ids}}).encode()
    with pytest.raises(P.ProtocolError, match=r"Allocated.block_ids\[1\]"):
        P.decode_message(body, [b"x"])


def test_blob_references_inside_lists_still_resolve():
    msg = P.Submit(request_id="r", prompt_token_ids=[5] * 300, sampling={}, images=[b"ab", b"c"], image_sizes=[[1, 2], [3, 4]])
    body, blobs = P.encode_message(msg)
    assert blobs == [b"ab", b"c"]
    assert P.decode_message(body, blobs) == msg
