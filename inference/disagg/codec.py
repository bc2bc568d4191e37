"""Codec of the control messages (protocol.py): registry, encode, checked decode.

encode_message(msg) -> (JSON body, blobs): `bytes` values become
{"$blob": i} references to raw blobs, BlockIds fields become their runs
[[first, count], ...]. decode_message(body, blobs) resolves the blobs and
checks every field against the message's annotations: it returns a fully
typed message or raises ProtocolError (the channel answers it with an Error
reply; a worker never crashes on a malformed message).
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass

from inference.transfer.blockids import BlockIds, BlockIdsError


class ProtocolError(ValueError):
    """A malformed or unknown message."""


MESSAGES: dict[str, type] = {}
_HINTS: dict[type, dict] = {}  # field annotations per message class, resolved once


def message(cls):
    """Register a dataclass as a wire message."""
    cls = dataclass(cls)
    MESSAGES[cls.__name__] = cls
    return cls


_INT = {int}
_PLAIN = {int, float, str, bool, type(None)}  # list elements that hold no blob and no nested list


def _check(value, hint, where: str):
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arm in typing.get_args(hint):
            try:
                return _check(value, arm, where)
            except ProtocolError:
                pass
        raise ProtocolError(f"{where}: {value!r:.60} is not {hint}")
    if hint is type(None):
        if value is not None:
            raise ProtocolError(f"{where}: expected null")
        return None
    if origin is list:
        if not isinstance(value, list):
            raise ProtocolError(f"{where}: expected a list")
        (arm,) = typing.get_args(hint)
        if arm is int and set(map(type, value)) <= _INT:
            # block ids, token ids: thousands per message; one C-level pass instead of a call per element
            return list(value)
        return [_check(v, arm, f"{where}[{i}]") for i, v in enumerate(value)]
    if hint is float:
        ok = isinstance(value, (int, float)) and not isinstance(value, bool)
        if not ok:
            raise ProtocolError(f"{where}: expected a number")
        return float(value)
    if hint is int and (type(value) is not int):
        raise ProtocolError(f"{where}: expected an int")
    if hint in (str, bool, dict, bytes) and type(value) is not hint:
        raise ProtocolError(f"{where}: expected {hint.__name__}")
    return value


def _block_ids(value, where: str) -> BlockIds:
    """A BlockIds field off the wire: runs [[first, count], ...], or a flat
    list of ids (what encode writes when runs would not be shorter)."""
    runs = type(value) is list and bool(value) and type(value[0]) is list
    try:
        return BlockIds.from_runs(value, where) if runs else BlockIds.from_list(value, where)
    except BlockIdsError as e:
        if not runs:
            _check(value, list[int], where)  # names the element that is not an int, if one is
        raise ProtocolError(str(e)) from None


def encode_message(msg) -> tuple[bytes, list[bytes]]:
    """-> (JSON bytes, blobs). `bytes` values become {"$blob": i}."""
    blobs: list[bytes] = []

    def put(v):
        if type(v) is BlockIds:
            # runs, unless they are short (a pool after much churn): a run costs about four
            # ids' time to write and parse (measured), so below 4 ids a run the plain list wins
            return v.to_wire() if 4 * v.num_runs <= len(v) else v.tolist()
        if isinstance(v, (bytes, bytearray, memoryview)):
            blobs.append(bytes(v))
            return {"$blob": len(blobs) - 1}
        if isinstance(v, list):
            if set(map(type, v)) <= _PLAIN:  # ids and tokens: nothing to replace, no call per element
                return list(v)
            return [put(x) for x in v]
        return v

    name = type(msg).__name__
    if MESSAGES.get(name) is not type(msg):
        raise TypeError(f"{name} is not a registered message")
    fields = {f.name: put(getattr(msg, f.name)) for f in dataclasses.fields(msg)}
    return json.dumps({"type": name, "fields": fields}, separators=(",", ":")).encode(), blobs


def decode_message(body: bytes, blobs: list[bytes]):
    try:
        obj = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ProtocolError(f"message is not JSON: {e}") from None
    if not isinstance(obj, dict) or not isinstance(obj.get("fields"), dict):
        raise ProtocolError("message must be {type, fields}")
    cls = MESSAGES.get(obj.get("type"))  # type: ignore[arg-type]
    if cls is None:
        raise ProtocolError(f"unknown message type {obj.get('type')!r:.60}")

    def take(v):
        if isinstance(v, dict) and set(v) == {"$blob"}:
            i = v["$blob"]
            if type(i) is not int or not 0 <= i < len(blobs):
                raise ProtocolError(f"bad blob reference {i!r}")
            return blobs[i]
        if isinstance(v, list):
            if set(map(type, v)) <= _PLAIN:  # no blob reference inside
                return v
            return [take(x) for x in v]
        return v

    hints = _HINTS.get(cls) or _HINTS.setdefault(cls, typing.get_type_hints(cls))
    given = obj["fields"]
    unknown = set(given) - set(hints)
    if unknown:
        raise ProtocolError(f"{cls.__name__}: unknown fields {sorted(unknown)[:5]}")
    values = {}
    for f in dataclasses.fields(cls):
        if f.name not in given:
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
                raise ProtocolError(f"{cls.__name__}: missing field {f.name!r}")
            continue
        hint, where = hints[f.name], f"{cls.__name__}.{f.name}"
        if hint is BlockIds:  # no blob inside: runs go to BlockIds as they are, checked there
            values[f.name] = _block_ids(given[f.name], where)
        else:
            values[f.name] = _check(take(given[f.name]), hint, where)
    return cls(**values)
