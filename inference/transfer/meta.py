"""Metadata that travels with a request's KV blocks (prefill -> decode).

The sender builds one TransferMeta per request; it is sent after the KV bytes
on the same ordered channel, so when the receiver reads it the blocks named in
dst_block_ids hold the request's KV. Serialized as JSON (to_wire: block ids as
[first, count] runs); from_dict checks every field's type, since it comes off
the wire.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class TransferMeta:
    request_id: str  # router-assigned id of the request
    src_block_ids: list[int]  # blocks in the sender's pool, in sequence order
    dst_block_ids: list[int]  # blocks in the receiver's pool, in sequence order
    num_tokens: int  # tokens of KV held by those blocks (prompt length)
    first_token_id: int  # token sampled by prefill; decode continues from it
    mrope_position_delta: int  # M-RoPE: decode positions = cache_position + delta
    sampling_state: dict = field(default_factory=dict)  # sampler params / RNG state (JSON-able)
    lease_expiry_unix_s: float = 0.0  # after this wall-clock time the sender frees the source blocks

    def __post_init__(self) -> None:
        # one pass of C-level checks per field (runs on every send and every
        # receive); bool is not int here
        if type(self.request_id) is not str or not self.request_id:
            raise ValueError("request_id must be a non-empty string")
        src, dst = self.src_block_ids, self.dst_block_ids
        for name, ids in (("src_block_ids", src), ("dst_block_ids", dst)):
            if not isinstance(ids, list) or (ids and (not set(map(type, ids)) <= _INT or min(ids) < 0)):
                raise ValueError(f"{name} must be a list of non-negative ints")
        if not (type(self.num_tokens) is type(self.first_token_id) is type(self.mrope_position_delta) is int):
            bad = next(n for n in ("num_tokens", "first_token_id", "mrope_position_delta") if type(getattr(self, n)) is not int)
            raise ValueError(f"{bad} must be an int, got {getattr(self, bad)!r}")
        if self.num_tokens < 0:
            raise ValueError("num_tokens must be >= 0")
        if not isinstance(self.sampling_state, dict):
            raise ValueError("sampling_state must be a dict")
        if not isinstance(self.lease_expiry_unix_s, (int, float)):
            raise ValueError("lease_expiry_unix_s must be a number")

    def with_lease(self, lease_s: float) -> "TransferMeta":
        """Stamp the lease expiry if the caller left it unset."""
        if not self.lease_expiry_unix_s:
            self.lease_expiry_unix_s = time.time() + lease_s
        return self

    def is_expired(self, now_unix_s: float | None = None) -> bool:
        return bool(self.lease_expiry_unix_s) and (now_unix_s or time.time()) > self.lease_expiry_unix_s

    def to_dict(self) -> dict:
        # shallow on purpose: asdict's deep copy costs more than the send at small sizes
        return {k: getattr(self, k) for k in self.__dataclass_fields__}

    def to_wire(self) -> dict:
        """to_dict() with the block id lists as [[first, count], ...] runs: a
        4096-block request is a few numbers instead of 8192 in JSON."""
        return {"request_id": self.request_id, "src_block_ids": _runs(self.src_block_ids),
                "dst_block_ids": _runs(self.dst_block_ids), "num_tokens": self.num_tokens,
                "first_token_id": self.first_token_id, "mrope_position_delta": self.mrope_position_delta,
                "sampling_state": self.sampling_state, "lease_expiry_unix_s": self.lease_expiry_unix_s}

    @classmethod
    def from_wire(cls, d: object) -> "TransferMeta":
        if isinstance(d, dict):
            d = {**d, **{k: _expand(d[k]) for k in ("src_block_ids", "dst_block_ids") if k in d}}
        return cls.from_dict(d)

    @classmethod
    def from_dict(cls, d: object) -> "TransferMeta":
        if not isinstance(d, dict):
            raise ValueError("transfer meta must be a JSON object")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except KeyError as e:
            raise ValueError(f"transfer meta lacks field {e}") from None


_INT = {int}
MAX_WIRE_IDS = 1 << 22  # more block ids than any pool holds: a bad frame, refused before expanding


def _runs(ids: list[int]) -> list[list[int]]:
    n = len(ids)
    if n and ids == list(range(ids[0], ids[0] + n)):  # the common case, one C-level compare
        return [[ids[0], n]]
    runs: list[list[int]] = []
    for b in ids:
        if runs and b == runs[-1][0] + runs[-1][1]:
            runs[-1][1] += 1
        else:
            runs.append([b, 1])
    return runs


def _expand(runs: object) -> object:
    """[[first, count], ...] -> ids; anything malformed is passed on for from_dict to refuse."""
    if not isinstance(runs, list) or not all(isinstance(r, list) and len(r) == 2 and set(map(type, r)) <= {int} for r in runs):
        return runs
    if sum(max(c, 0) for _, c in runs) > MAX_WIRE_IDS:
        raise ValueError(f"transfer meta names more than {MAX_WIRE_IDS} blocks")
    out: list[int] = []
    for first, count in runs:
        if count < 1:
            raise ValueError(f"block id run [{first}, {count}] is empty")
        out.extend(range(first, first + count))
    return out
