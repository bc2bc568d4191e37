"""TransferMeta.prompt_token_ids: optional, checked, packed on the wire
(token_pack.py), absent from a META of a peer that predates it, and every
malformed packing refused with ValueError."""
from __future__ import annotations

import base64
import zlib

import numpy as np
import pytest

from inference.transfer import TransferMeta, wire
from inference.transfer.doorbell import SLOT_BYTES
from inference.transfer.token_pack import pack, unpack

BLOCK_PROMPT = [151644, 872, 198, 151652] + [151655] * 2980 + [151653] + list(range(1000, 1015))


def meta(prompt, n=None, **kw) -> TransferMeta:
    n = len(prompt) if n is None else n
    return TransferMeta("r@0", list(range(8)), list(range(8, 16)), n, 5, -3,
                        {"temperature": 0.0, "no_repeat_ngram_size": 100}, 123.0, prompt_token_ids=prompt, **kw)


def roundtrip(m: TransferMeta) -> TransferMeta:
    import json
    return TransferMeta.from_wire(json.loads(wire.encode_json({"meta": m.to_wire()}))["meta"])


@pytest.mark.parametrize("prompt, dtype", [(BLOCK_PROMPT, "<i4"), ([0, (1 << 31), -5, (1 << 62)], "<i8"), ([], "<i4")])
def test_prompt_roundtrips_packed(prompt, dtype):
    m = meta(prompt)
    assert m.to_wire()["prompt_token_ids"]["dtype"] == dtype
    back = roundtrip(m)
    assert back.prompt_token_ids == prompt and type(back.prompt_token_ids) is list
    assert all(type(t) is int for t in back.prompt_token_ids)
    assert back == m


def test_block_request_meta_fits_a_shm_ring_slot():
    body = wire.encode_json({"seq": 1, "meta": meta(BLOCK_PROMPT).to_wire(), "self_acked": True})
    assert len(body) <= SLOT_BYTES - 4  # the ring's fast path, not a socket META frame
    assert len(body) < len(str(BLOCK_PROMPT)) // 10


def test_absent_prompt_is_none_and_not_sent():
    m = meta(None, n=40)
    assert "prompt_token_ids" not in m.to_wire()
    old_peer = {k: v for k, v in m.to_wire().items()}  # what a sender that predates the field writes
    assert roundtrip(m).prompt_token_ids is None and TransferMeta.from_wire(old_peer) == m
    assert TransferMeta.from_wire(meta([1, 2, 3]).to_dict()).prompt_token_ids == [1, 2, 3]  # the list form


@pytest.mark.parametrize("prompt, n, why", [
    ([1, 2.0], 2, "int64 ints"), ([1, "2"], 2, "int64 ints"), ([1 << 63], 1, "int64 ints"),
    ((1, 2), 3, "ids for num_tokens=3"), ({1, 2}, 2, "list of ints"), (np.arange(3), 3, "list of ints")])
def test_constructor_refuses_bad_prompts(prompt, n, why):
    with pytest.raises(ValueError, match=why):
        meta(prompt, n=n)


def _zb64(raw: bytes) -> str:
    return base64.b64encode(zlib.compress(raw)).decode()


@pytest.mark.parametrize("packed, why", [
    ([1, 2], "dtype, n, zb64"),
    ({"dtype": "<f4", "n": 1, "zb64": _zb64(b"\0" * 4)}, "unknown dtype"),
    ({"dtype": "<i4", "n": True, "zb64": _zb64(b"\0" * 4)}, "count"),
    ({"dtype": "<i4", "n": -1, "zb64": ""}, "count"),
    ({"dtype": "<i4", "n": 1 << 40, "zb64": ""}, "count"),
    ({"dtype": "<i4", "n": 2, "zb64": _zb64(b"\0" * 4)}, "4 bytes for 2 ids"),
    ({"dtype": "<i4", "n": 1, "zb64": _zb64(b"\0" * (64 << 20))}, "5 bytes for 1 ids"),  # bounded inflate
    ({"dtype": "<i4", "n": 1, "zb64": base64.b64encode(zlib.compress(b"\0" * 4) + b"junk").decode()}, "4 bytes"),
    ({"dtype": "<i4", "n": 1, "zb64": "not base64!"}, "packed token ids"),
    ({"dtype": "<i4", "n": 1, "zb64": base64.b64encode(b"not zlib").decode()}, "packed token ids"),
])
def test_malformed_packing_is_refused(packed, why):
    with pytest.raises(ValueError, match=why):
        unpack(packed, 1 << 21)
    wire_form = {**meta([7]).to_wire(), "prompt_token_ids": packed}
    with pytest.raises(ValueError):
        TransferMeta.from_wire(wire_form)


def test_packed_length_must_match_num_tokens():
    wire_form = {**meta([7, 8, 9]).to_wire(), "prompt_token_ids": pack([7, 8])}
    with pytest.raises(ValueError, match="2 ids for num_tokens=3"):
        TransferMeta.from_wire(wire_form)
