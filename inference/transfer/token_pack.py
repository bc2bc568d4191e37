"""Compact wire form of a token id list (TransferMeta.prompt_token_ids).

pack(ids) -> {"dtype": "<i4" | "<i8", "n": len(ids), "zb64": text}: the ids
as little-endian int32 (int64 only when one does not fit), zlib-compressed
(level 1) and base64-encoded, so the list travels inside the META's JSON
header. Why compressed: an expanded prompt is mostly one image-pad id
repeated once per image token, which zlib folds to a few bytes; a block
request's META then still fits a shm ring slot (doorbell.py).
unpack(obj, max_n) checks everything (it comes off the wire): the dtype, n
in [0, max_n], the decompressed size exactly n ids (decompression is bounded
by n, so a small META never expands into a large allocation); anything off
raises ValueError.
"""
from __future__ import annotations

import base64
import binascii
import zlib

import numpy as np

INT32_MIN, INT32_MAX = -(1 << 31), (1 << 31) - 1
DTYPES = {"<i4": 4, "<i8": 8}  # wire dtype -> bytes per id


def pack(ids) -> dict:
    arr = np.asarray(ids, dtype=np.int64)
    dtype = "<i4" if not len(arr) or (INT32_MIN <= arr.min() and arr.max() <= INT32_MAX) else "<i8"
    raw = arr.astype(dtype).tobytes()
    return {"dtype": dtype, "n": len(arr), "zb64": base64.b64encode(zlib.compress(raw, 1)).decode("ascii")}


def unpack(obj: object, max_n: int) -> list[int]:
    if not isinstance(obj, dict) or set(obj) != {"dtype", "n", "zb64"}:
        raise ValueError("packed token ids must be {dtype, n, zb64}")
    dtype, n, text = obj["dtype"], obj["n"], obj["zb64"]
    if dtype not in DTYPES:
        raise ValueError(f"packed token ids: unknown dtype {dtype!r:.20}")
    if type(n) is not int or not 0 <= n <= max_n:
        raise ValueError(f"packed token ids: count {n!r:.20} not in [0, {max_n}]")
    if type(text) is not str:
        raise ValueError("packed token ids: zb64 must be a string")
    size = n * DTYPES[dtype]
    try:
        z = zlib.decompressobj()
        raw = z.decompress(base64.b64decode(text, validate=True), size + 1)  # bounded: no expansion past n ids
    except (binascii.Error, zlib.error) as e:
        raise ValueError(f"packed token ids: {e}") from None
    if len(raw) != size or not z.eof or z.unused_data:
        raise ValueError(f"packed token ids: {len(raw)} bytes for {n} ids of {dtype}")
    return np.frombuffer(raw, dtype=dtype).tolist()
