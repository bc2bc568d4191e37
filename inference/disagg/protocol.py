"""Typed control messages between the client, the router and the PD workers.

Every message is a dataclass registered under its class name. On the wire a
message is one frame (framing in channel.py): a JSON object
{"type": name, "fields": {...}} plus raw byte blobs for `bytes` fields (image
pixels), so pixels never pass through JSON. Block ids (BlockIds fields) travel as
runs, [[first, count], ...]: a 4096-block request is one pair, not 4096 ints
for every hop to print and parse. `decode_message` checks the type name and
every field's type against the annotations (codec.py): a message off the wire
is either fully typed or a ProtocolError (answered with an Error reply).

Request flow (router-driven; ids are "<request_id>@<attempt>" on workers):
  client  --Submit-->  router
  router  --PrefillRequest-->  prefill  --PrefillDone-->  router
  router  --DecodeRequest-->   decode   --Allocated-->    router   (blocks pre-allocated)
  router  --TransferRequest--> prefill  --TransferDone--> router   (KV + TransferMeta to decode)
Pre-allocation (the fast path): with the PrefillRequest the router sends a
DecodeRequest(is_reservation) sized from the submitted prompt; once it is
Allocated, a TransferRequest(dst_block_size) names the destination before the
prefill ends, and the prefill worker pushes the KV as soon as it has it
(PrefillDone(pushed=True), then TransferDone). The decode worker learns first
token, rope delta and length from the landed TransferMeta. Any miss (no room,
the answer late, the reservation too small) falls back to the flow above.
  decode  --DecodeDone-->  router  --Result-->  client
  router  --Release-->  prefill | decode  (free held / pre-allocated blocks on abort or retry)
"""
from __future__ import annotations

from dataclasses import field

from inference.disagg.codec import MESSAGES, ProtocolError, decode_message, encode_message, message
from inference.transfer.blockids import BlockIds

__all__ = ["MESSAGES", "ProtocolError", "decode_message", "encode_message", "message"]  # and the messages


def _as_block_ids(msg, name: str) -> None:
    """Callers may build a message with a list (or range) of ids: it becomes
    BlockIds once, here (malformed ids: BlockIdsError, a ValueError)."""
    value = getattr(msg, name)
    if type(value) is not BlockIds:
        setattr(msg, name, BlockIds.from_list(value, f"{type(msg).__name__}.{name}"))


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
    reset: bool = False  # after this reply, latency windows start empty (counters stay): e.g. after a warm-up


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
    prompt_token_ids: list[int]  # expanded prompt (decode needs it for penalties); [] when pushed (in the KV's meta)
    prefill_s: float  # seconds from arrival at the worker to the first token
    queued_prefill_tokens: int = 0  # prompt tokens still queued on this worker
    admit_wait_s: float = -1.0  # received by the worker -> in its engine (host prep, loop busy); -1: not measured
    text: str | None = None  # first token's text when the model has a tokenizer
    pushed: bool = False  # its KV is already on the way to the destination of an early TransferRequest


@message
class PrefillFailed:
    request_id: str  # "<id>@<attempt>"
    error: str  # why (bad request, too long, engine error)
    retryable: bool = False  # True for transient faults


@message
class TransferRequest:
    request_id: str  # "<id>@<attempt>", its KV is held on the prefill worker
    dst_address: str  # decode worker's KV receiver "host:port"
    dst_block_ids: BlockIds  # pre-allocated blocks in the decode pool, in sequence order (a list is converted)
    # tokens per decode block when dst_block_ids is a reservation (may be longer than the KV needs:
    # only the first blocks that hold it are written); 0: the ids are exact. Sent before the prefill
    # ended, it is kept and the KV pushed as soon as it is there (PrefillDone.pushed)
    dst_block_size: int = 0

    def __post_init__(self):
        _as_block_ids(self, "dst_block_ids")


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
    # True: sent with the PrefillRequest, before any token exists: num_prompt_tokens is an upper bound
    # of the expanded prompt, first_token / rope_delta / prompt_token_ids are unknown (0, 0, []); the
    # landed TransferMeta says them, and the blocks past its length are freed at landing
    is_reservation: bool = False


@message
class Allocated:
    request_id: str  # "<id>@<attempt>"
    ok: bool  # False: no room now (router retries later) or never fits
    block_ids: BlockIds = field(default_factory=BlockIds)  # destination blocks, in sequence order (a list is converted)
    num_free_blocks: int = 0  # free blocks after this allocation
    error: str = ""  # why not, when not ok

    def __post_init__(self):
        _as_block_ids(self, "block_ids")


@message
class DecodeDone:
    request_id: str  # "<id>@<attempt>"
    token_ids: list[int]  # all generated tokens, first token included
    finish_reason: str  # "stop" | "length" | "abort"
    text: str | None = None  # detokenized output
    num_free_blocks: int = 0  # free blocks after this request's blocks were freed
    step_s: float = 0.0  # recent mean decode step time of this worker (load signal)
    kv_wait_s: float = -1.0  # Allocated sent -> KV landed, on the decode worker (-1: not measured)
    decode_s: float = -1.0  # KV landed -> finished, on the decode worker (-1: not measured)
    decode_steps: int = -1  # engine steps of the decode worker in that span (-1: not measured)
    max_step_s: float = -1.0  # the longest of those steps (-1: not measured)
    kv_hops_s: dict = field(default_factory=dict)  # the KV's hop spans, transfer.meta.hop_spans (s)


@message
class Load:
    queued_prefill_tokens: int = 0  # prefill: prompt tokens waiting or in prefill
    num_free_blocks: int = 0  # free KV blocks
    num_running: int = 0  # requests decoding (decode) or prefilling (prefill)
    step_s: float = 0.0  # recent mean engine step time


@message
class Shutdown:
    reason: str = ""  # why the peer asks this process to stop
