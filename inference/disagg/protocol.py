"""Typed control messages between the client, the router and the PD workers.

Every message is a dataclass registered under its class name. On the wire a
message is one frame (framing in channel.py): a JSON object
{"type": name, "fields": {...}} plus raw byte blobs for `bytes` fields (image
pixels), so pixels never pass through JSON. `decode_message` checks the type
name and every field's type against the annotations: a message off the wire
is either fully typed or a ProtocolError (answered with an Error reply).

Request flow (router-driven; ids are "<request_id>@<attempt>" on workers):
  client  --Submit-->  router
  router  --PrefillRequest-->  prefill  --PrefillDone-->  router
  router  --DecodeRequest-->   decode   --Allocated-->    router   (blocks pre-allocated)
  router  --TransferRequest--> prefill  --TransferDone--> router   (KV + TransferMeta to decode)
  decode  --DecodeDone-->  router  --Result-->  client
  router  --Release-->  prefill | decode  (free held / pre-allocated blocks on abort or retry)
"""
from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field


class ProtocolError(ValueError):
    """A malformed or unknown message."""


MESSAGES: dict[str, type] = {}


def message(cls):
    """Register a dataclass as a wire message."""
    cls = dataclass(cls)
    MESSAGES[cls.__name__] = cls
    return cls


# ---- handshake and errors ---------------------------------------------------------
@message
class Hello:
    role: str  # "prefill" | "decode" | "router" | "client"
    index: int = 0  # worker index within its role
    transfer_address: str = ""  # decode: where its KV receiver listens ("host:port")
    num_free_blocks: int = 0  # decode: free KV blocks right now
    block_size: int = 0  # tokens per KV block of this worker
    pid: int = 0  # OS process id (for logs and fault tests)


@message
class Error:
    error: str  # what was wrong with the last message
    request_id: str = ""  # the request it concerns, when known


# ---- client <-> router ----------------------------------------------------------------
@message
class Submit:
    request_id: str  # client-chosen id, unique per router; results are keyed by it
    prompt_token_ids: list[int]  # prompt with one image placeholder per image
    sampling: dict  # SamplingParams fields (dataclasses.asdict)
    images: list[bytes] = field(default_factory=list)  # raw RGB pixels, one blob per image
    image_sizes: list[list[int]] = field(default_factory=list)  # [width_px, height_px] per image


@message
class Result:
    request_id: str  # the Submit's id
    token_ids: list[int]  # generated tokens (first token included)
    finish_reason: str  # "stop" | "length" | "abort"
    num_prompt_tokens: int  # after image placeholder expansion
    ttft_s: float  # submit -> first token at the router
    tpot_s: float  # mean seconds per output token after the first
    text: str | None = None  # detokenized output when the model has a tokenizer
    num_retries: int = 0  # re-prefills after worker or transfer faults


@message
class Rejected:
    request_id: str  # the Submit's id
    reason: str  # "queue_full" | "slo" | "too_long" | "bad_request" | ...


@message
class MetricsRequest:
    format: str = "json"  # "json" | "prometheus"


@message
class MetricsReply:
    body: str  # metrics as JSON text or Prometheus exposition text


@message
class AddWorker:
    role: str  # "prefill" | "decode"
    address: str  # control address "host:port" of a (re)started worker


# ---- router <-> prefill -----------------------------------------------------------------
@message
class PrefillRequest:
    request_id: str  # "<id>@<attempt>"
    prompt_token_ids: list[int]  # as submitted
    sampling: dict  # SamplingParams fields; prefill runs them with max_tokens=1
    images: list[bytes] = field(default_factory=list)  # raw RGB pixels
    image_sizes: list[list[int]] = field(default_factory=list)  # [width_px, height_px] per image


@message
class PrefillDone:
    request_id: str  # "<id>@<attempt>"
    num_prompt_tokens: int  # expanded prompt length = tokens of KV held
    first_token: int  # token sampled at the end of prefill
    rope_delta: int  # M-RoPE position delta
    prompt_token_ids: list[int]  # expanded prompt (decode needs it for penalties)
    prefill_s: float  # seconds from arrival at the worker to the first token
    queued_prefill_tokens: int = 0  # prompt tokens still queued on this worker
    text: str | None = None  # first token's text when the model has a tokenizer


@message
class PrefillFailed:
    request_id: str  # "<id>@<attempt>"
    error: str  # why (bad request, too long, engine error)
    retryable: bool = False  # True for transient faults


@message
class TransferRequest:
    request_id: str  # "<id>@<attempt>", its KV is held on the prefill worker
    dst_address: str  # decode worker's KV receiver "host:port"
    dst_block_ids: list[int]  # pre-allocated blocks in the decode pool, in sequence order


@message
class TransferDone:
    request_id: str  # "<id>@<attempt>"
    ok: bool  # acked by the receiver
    error: str = ""  # why not, when not ok
    num_bytes: int = 0  # KV bytes moved
    transfer_s: float = 0.0  # send start -> ack


@message
class Release:
    request_id: str  # "<id>@<attempt>": drop its held or pre-allocated blocks (idempotent)
    transfer_started: bool = True  # False: no TransferRequest was sent, decode may free its blocks at once


# ---- router <-> decode ----------------------------------------------------------------
@message
class DecodeRequest:
    request_id: str  # "<id>@<attempt>"
    num_prompt_tokens: int  # tokens of KV that will land
    first_token: int  # prefill's sampled token: the first decode input
    rope_delta: int  # M-RoPE delta
    prompt_token_ids: list[int]  # expanded prompt (penalties read it)
    sampling: dict  # SamplingParams fields


@message
class Allocated:
    request_id: str  # "<id>@<attempt>"
    ok: bool  # False: no room now (router retries later) or never fits
    block_ids: list[int] = field(default_factory=list)  # destination blocks, in sequence order
    num_free_blocks: int = 0  # free blocks after this allocation
    error: str = ""  # why not, when not ok


@message
class DecodeDone:
    request_id: str  # "<id>@<attempt>"
    token_ids: list[int]  # all generated tokens, first token included
    finish_reason: str  # "stop" | "length" | "abort"
    text: str | None = None  # detokenized output
    num_free_blocks: int = 0  # free blocks after this request's blocks were freed
    step_s: float = 0.0  # recent mean decode step time of this worker (load signal)


@message
class Load:
    queued_prefill_tokens: int = 0  # prefill: prompt tokens waiting or in prefill
    num_free_blocks: int = 0  # free KV blocks
    num_running: int = 0  # requests decoding (decode) or prefilling (prefill)
    step_s: float = 0.0  # recent mean engine step time


@message
class Shutdown:
    reason: str = ""  # why the peer asks this process to stop


# ---- codec ---------------------------------------------------------------------------
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


def encode_message(msg) -> tuple[bytes, list[bytes]]:
    """-> (JSON bytes, blobs). `bytes` values become {"$blob": i}."""
    blobs: list[bytes] = []

    def put(v):
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

    hints = typing.get_type_hints(cls)
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
        values[f.name] = _check(take(given[f.name]), hints[f.name], f"{cls.__name__}.{f.name}")
    return cls(**values)
