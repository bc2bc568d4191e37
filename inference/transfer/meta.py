"""Metadata that travels with a request's KV blocks (prefill -> decode).

The sender builds one TransferMeta per request; it is sent after the KV bytes
on the same ordered channel, so when the receiver reads it the blocks named in
dst_block_ids hold the request's KV. Block ids are BlockIds (blockids.py):
runs of consecutive ids, built once from the caller's lists (or ranges) and
read as runs by every later step. Serialized as JSON (to_wire: block ids as
[first, count] runs, a few numbers for a 4096-block request); from_wire
checks every field's type and every run, since it comes off the wire.
"""
from __future__ import annotations

import time
from array import array
from dataclasses import dataclass, field

from inference.transfer.blockids import MAX_IDS as MAX_WIRE_IDS  # noqa: F401 (re-exported)
from inference.transfer.blockids import BlockIds
from inference.transfer.token_pack import pack, unpack

MAX_PROMPT_TOKENS = 1 << 21  # bound of a prompt off the wire (the largest KV pools hold ~1M tokens)
OPTIONAL = ("prompt_token_ids", "hops")  # fields an older peer does not send (hops never travels in it)
HOPS = ("queued", "send", "sent", "received", "landed", "dispatched")  # stamps, in order (hop_spans)
HOP_SPANS = ("kv_queue", "kv_send", "kv_wire", "kv_copy_wait", "kv_inbox")  # between consecutive HOPS


@dataclass
class TransferMeta:
    request_id: str  # router-assigned id of the request
    src_block_ids: BlockIds  # blocks in the sender's pool, in sequence order (a list of ints is converted)
    dst_block_ids: BlockIds  # blocks in the receiver's pool, in sequence order (a list of ints is converted)
    num_tokens: int  # tokens of KV held by those blocks (prompt length)
    first_token_id: int  # token sampled by prefill; decode continues from it
    mrope_position_delta: int  # M-RoPE: decode positions = cache_position + delta
    sampling_state: dict = field(default_factory=dict)  # sampler params / RNG state (JSON-able)
    lease_expiry_unix_s: float = 0.0  # after this wall-clock time the sender frees the source blocks
    prompt_token_ids: list[int] | None = None  # expanded prompt (num_tokens ids) when sent; None: not sent
    # wall-clock stamps (time.time()) of this transfer's hops, HOPS names: kept locally, not in to_wire();
    # the sender's travel in the META frame's header and the receiver adds its own (receiver.py)
    hops: dict = field(default_factory=dict, compare=False, repr=False)

    def __post_init__(self) -> None:
        # runs on every send and every receive: ids off the wire are BlockIds already (checked
        # run by run); lists are checked and converted once here. bool is not int here
        if type(self.request_id) is not str or not self.request_id:
            raise ValueError("request_id must be a non-empty string")
        if type(self.src_block_ids) is not BlockIds:
            self.src_block_ids = BlockIds.from_list(self.src_block_ids, "src_block_ids")
        if type(self.dst_block_ids) is not BlockIds:
            self.dst_block_ids = BlockIds.from_list(self.dst_block_ids, "dst_block_ids")
        if not (type(self.num_tokens) is type(self.first_token_id) is type(self.mrope_position_delta) is int):
            bad = next(n for n in ("num_tokens", "first_token_id", "mrope_position_delta") if type(getattr(self, n)) is not int)
            raise ValueError(f"{bad} must be an int, got {getattr(self, bad)!r}")
        if self.num_tokens < 0:
            raise ValueError("num_tokens must be >= 0")
        if not isinstance(self.sampling_state, dict):
            raise ValueError("sampling_state must be a dict")
        if not isinstance(self.lease_expiry_unix_s, (int, float)):
            raise ValueError("lease_expiry_unix_s must be a number")
        if self.prompt_token_ids is not None:
            self.prompt_token_ids = _token_list(self.prompt_token_ids, self.num_tokens)
        if self.hops:  # off a queue or a pipe (to_dict): only finite HOPS stamps stay
            self.hops = hop_stamps(self.hops)

    def with_lease(self, lease_s: float) -> "TransferMeta":
        """Stamp the lease expiry if the caller left it unset."""
        if not self.lease_expiry_unix_s:
            self.lease_expiry_unix_s = time.time() + lease_s
        return self

    def is_expired(self, now_unix_s: float | None = None) -> bool:
        return bool(self.lease_expiry_unix_s) and (now_unix_s or time.time()) > self.lease_expiry_unix_s

    def to_dict(self) -> dict:
        """Plain values (block ids as lists): for pickling and JSON outside the hot path."""
        d = {k: getattr(self, k) for k in self.__dataclass_fields__}
        d["src_block_ids"], d["dst_block_ids"] = list(self.src_block_ids.tolist()), list(self.dst_block_ids.tolist())
        return d

    def to_wire(self) -> dict:
        """The META's JSON form, block ids as [[first, count], ...] runs."""
        return {"request_id": self.request_id, "src_block_ids": self.src_block_ids.to_wire(),
                "dst_block_ids": self.dst_block_ids.to_wire(), "num_tokens": self.num_tokens,
                "first_token_id": self.first_token_id, "mrope_position_delta": self.mrope_position_delta,
                "sampling_state": self.sampling_state, "lease_expiry_unix_s": self.lease_expiry_unix_s,
                **({} if self.prompt_token_ids is None else {"prompt_token_ids": pack(self.prompt_token_ids)})}

    @classmethod
    def from_wire(cls, d: object) -> "TransferMeta":
        """to_wire()'s form (runs) or to_dict()'s (id lists); anything else raises ValueError."""
        if type(d) is dict and d.keys() == _PLAIN_WIRE_KEYS and (meta := cls._from_plain_wire(d)) is not None:
            return meta
        if isinstance(d, dict):
            d = dict(d)  # the caller's dict stays as it was
            for k in ("src_block_ids", "dst_block_ids"):
                if k in d:
                    d[k] = _ids_from_wire(d[k], k)
            if isinstance(d.get("prompt_token_ids"), dict):  # packed (to_wire); a plain list is checked as such
                prompt = unpack(d.pop("prompt_token_ids"), MAX_PROMPT_TOKENS)
                meta = cls.from_dict(d)
                if len(prompt) != meta.num_tokens:
                    raise ValueError(f"prompt_token_ids has {len(prompt)} ids for num_tokens={meta.num_tokens}")
                meta.prompt_token_ids = prompt  # ints of int32/int64 bytes: no per-id check needed
                return meta
        return cls.from_dict(d)

    @classmethod
    def _from_plain_wire(cls, d: dict) -> "TransferMeta | None":
        """The common META off the wire (every to_wire field, no prompt, one run of ids a side, each
        field of its plain type) built without the general path's copies and generic passes (~6 us
        of the receiver's ~10 a transfer); None for anything else, which the general path then
        checks (and refuses with its own message). Accepts only what __post_init__ accepts."""
        rid, num_tokens, first, delta = d["request_id"], d["num_tokens"], d["first_token_id"], d["mrope_position_delta"]
        sampling, lease = d["sampling_state"], d["lease_expiry_unix_s"]
        if not (type(rid) is str and rid and type(num_tokens) is int and num_tokens >= 0 and type(first) is int
                and type(delta) is int and type(sampling) is dict and type(lease) in _PLAIN_NUMBERS):
            return None
        src, dst = BlockIds.one_run_from_wire(d["src_block_ids"]), BlockIds.one_run_from_wire(d["dst_block_ids"])
        if src is None or dst is None:
            return None
        self = cls.__new__(cls)
        self.request_id, self.src_block_ids, self.dst_block_ids = rid, src, dst
        self.num_tokens, self.first_token_id, self.mrope_position_delta = num_tokens, first, delta
        self.sampling_state, self.lease_expiry_unix_s, self.prompt_token_ids, self.hops = sampling, lease, None, {}
        return self

    @classmethod
    def from_dict(cls, d: object) -> "TransferMeta":
        if not isinstance(d, dict):
            raise ValueError("transfer meta must be a JSON object")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__ if k in d or k not in OPTIONAL})
        except KeyError as e:
            raise ValueError(f"transfer meta lacks field {e}") from None


_PLAIN_WIRE_KEYS = frozenset(("request_id", "src_block_ids", "dst_block_ids", "num_tokens", "first_token_id",
                              "mrope_position_delta", "sampling_state", "lease_expiry_unix_s"))
_PLAIN_NUMBERS = (int, float)
_HOP_NAMES = frozenset(HOPS)


def hop_stamps(v: object) -> dict:
    """The HOPS stamps of a header's `hops` object that are finite numbers (anything else is dropped:
    a timing stamp never fails a transfer)."""
    out = {}
    if isinstance(v, dict):
        for k, x in v.items():  # what a sender stamped (three of HOPS), not every name looked up
            if k not in _HOP_NAMES:
                continue
            if type(x) is float:
                if x - x == 0.0:  # finite (inf - inf and nan are nan): wire.all_finite's test, inline for one scalar
                    out[k] = x
            elif type(x) is int:
                try:
                    out[k] = float(x)  # finite whenever it converts
                except OverflowError:  # an int beyond float's range
                    pass
    return out


def hop_spans(stamps: dict) -> dict:
    """Seconds between consecutive HOPS stamps, named for the later hop's work: kv_queue (waiting for
    the sender thread), kv_send (prepare, copies queued), kv_wire (META on the wire), kv_copy_wait (the
    receiver's wait for the copies), kv_inbox (landed -> the decode loop took it). Only spans whose two
    stamps are set and in order (clocks of one host; across hosts they are as good as their sync).
    What a span holds depends on the transport: kv_send includes waiting for room (max_inflight) and,
    on rdma, the writes; kv_wire holds the last data unit on tcp and the whole copy on shm (its META
    is encoded before the copy); kv_copy_wait is cuda-ipc's wait for the sender's copy event."""
    spans = {}
    for name, (a, b) in zip(HOP_SPANS, zip(HOPS, HOPS[1:])):
        if a in stamps and b in stamps and stamps[b] >= stamps[a]:
            spans[name] = stamps[b] - stamps[a]
    return spans


def _ids_from_wire(v: object, name: str) -> object:
    """Runs ([[first, count], ...]) become BlockIds, checked; a plain id list (or
    anything malformed) is left for __post_init__ to convert or refuse."""
    if type(v) is list and v and type(v[0]) is list:
        return BlockIds.from_runs(v, name)
    return v


def _token_list(v: object, num_tokens: int) -> list[int]:
    """A prompt of num_tokens int64-range ints, as a list. One C-level pass checks type and range
    (array('q'), ~30 ns an id; it lets a bool pass as 0/1, harmless as a token id): a block
    request's prompt is thousands of ids, checked on the prefill worker's loop thread."""
    if isinstance(v, tuple):
        v = list(v)
    if type(v) is not list:
        raise ValueError("prompt_token_ids must be a list of ints")
    try:
        array("q", v)
    except (TypeError, OverflowError) as e:
        raise ValueError(f"prompt_token_ids must be a list of int64 ints: {e}") from None
    if len(v) != num_tokens:
        raise ValueError(f"prompt_token_ids has {len(v)} ids for num_tokens={num_tokens}")
    return v


def meta_header(seq: int, meta: TransferMeta, sent_at: float | None = None, **extra) -> dict:
    """A META frame's header: seq, the meta's wire form, transport fields, and the sender's hop
    stamps with `sent` now, or at `sent_at` (a chunk's headers share one clock reading; every
    transport's META is built here)."""
    meta.hops["sent"] = time.time() if sent_at is None else sent_at
    return {"seq": seq, "meta": meta.to_wire(), **extra, "hops": meta.hops}
