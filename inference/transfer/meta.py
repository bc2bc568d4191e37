"""Metadata that travels with a request's KV blocks (prefill -> decode).

The sender builds one TransferMeta per request; it is sent after the KV bytes
on the same ordered channel, so when the receiver reads it the blocks named in
dst_block_ids hold the request's KV. Serialized as JSON; from_dict checks every
field's type, since it comes off the wire.
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
        if not isinstance(self.request_id, str) or not self.request_id:
            raise ValueError("request_id must be a non-empty string")
        for name in ("src_block_ids", "dst_block_ids"):
            ids = getattr(self, name)
            if not isinstance(ids, list) or not all(type(b) is int and b >= 0 for b in ids):
                raise ValueError(f"{name} must be a list of non-negative ints")
        for name in ("num_tokens", "first_token_id", "mrope_position_delta"):
            if type(getattr(self, name)) is not int:
                raise ValueError(f"{name} must be an int, got {getattr(self, name)!r}")
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

    @classmethod
    def from_dict(cls, d: object) -> "TransferMeta":
        if not isinstance(d, dict):
            raise ValueError("transfer meta must be a JSON object")
        try:
            return cls(**{k: d[k] for k in cls.__dataclass_fields__})
        except KeyError as e:
            raise ValueError(f"transfer meta lacks field {e}") from None
