"""Sender-side preparation of one transfer: check ids, convert, plan.

Same layout on both sides: the source is the pool itself and the pairs are
zip(src_block_ids, dst_block_ids). Otherwise convert.repack builds the
destination-layout blocks in a staging tensor, and the pairs are
(staging index, dst block). Either way the result is a flat byte view of the
source plus work units of byte segments into the destination pool (cut at
max_unit_bytes, for frames and work requests) and the whole runs as byte
copies (for memcpy-like transports: a large run stays one call).
Block ids are read as runs (BlockIds), so the checks and the plan cost
O(runs), not O(blocks); check_landing is the receiver's O(runs) check.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from inference.transfer import convert
from inference.transfer.base import PoolSpec, TransferConfig, TransferError
from inference.transfer.meta import TransferMeta
from inference.transfer.blockids import BlockIds
from inference.transfer.plan import Run, WorkUnit, coalesce_runs, plan_units


@dataclass
class PreparedTransfer:
    src_bytes: torch.Tensor  # flat uint8 view of the source (pool or staging)
    runs: list[Run]  # coalesced (src block, dst block, count) runs
    block_bytes: int  # bytes per block on both sides (destination layout)
    min_unit_bytes: int  # work unit bounds (config), for `units`
    max_unit_bytes: int

    @property  # read once per transfer; functools.cached_property takes a lock (Python 3.11)
    def copies(self) -> list[tuple[int, int, int]]:
        """Whole runs as (src offset, dst offset, bytes): one memcpy each."""
        bb = self.block_bytes
        return [(r.src_block * bb, r.dst_block * bb, r.num_blocks * bb) for r in self.runs]

    @property
    def units(self) -> list[WorkUnit]:
        """Segments into the destination pool, grouped for frames / work requests
        (built when read, once per transfer: memcpy-like transports never need them)."""
        return plan_units(self.runs, self.block_bytes, self.min_unit_bytes, self.max_unit_bytes)

    num_bytes: int = field(init=False)  # every block of the runs, read per transfer by the reserve and the chunks

    def __post_init__(self) -> None:
        self.num_bytes = sum(r.num_blocks for r in self.runs) * self.block_bytes


def flat_bytes(t: torch.Tensor) -> torch.Tensor:
    return t.reshape(-1).view(torch.uint8)


def copy_addresses(src: torch.Tensor, dst: torch.Tensor, copies: list[tuple[int, int, int]],
                   who: str) -> list[tuple[int, int, int]]:
    """(dst address, src address, bytes) of each (src offset, dst offset, bytes) copy between the flat
    byte tensors (PreparedTransfer.copies), every one checked inside both first: raw pointers must
    not touch memory outside. The one offset -> address step of the memcpy-like paths (cuda-ipc's
    cudaMemcpyAsync calls, memcopy's memmoves); `who` names the caller in the error."""
    s_len, d_len = src.numel(), dst.numel()
    for s_off, d_off, n in copies:
        if s_off < 0 or d_off < 0 or n <= 0 or s_off + n > s_len or d_off + n > d_len:  # no min(): a call a run
            raise TransferError(f"{who}: copy of {n} bytes at {s_off} -> {d_off} is outside the pools ({s_len}, {d_len})")
    s_ptr, d_ptr = src.data_ptr(), dst.data_ptr()
    return [(d_ptr + d_off, s_ptr + s_off, n) for s_off, d_off, n in copies]


def _check_ids(ids: BlockIds, spec: PoolSpec, side: str, request_id: str) -> None:
    if ids.max_id >= spec.num_blocks:  # O(1): BlockIds knows its largest id
        bad = ids.first_at_least(spec.num_blocks, 4)
        raise TransferError(f"{request_id}: {side} block ids {bad} outside the {side} pool of {spec.num_blocks} blocks")


def prepare(pool: torch.Tensor, src: PoolSpec, dst: PoolSpec, meta: TransferMeta, config: TransferConfig,
            pool_bytes: torch.Tensor | None = None) -> PreparedTransfer:
    """pool_bytes: flat_bytes(pool), passed by senders that keep it (saves a
    view per transfer)."""
    s_ids, d_ids = meta.src_block_ids, meta.dst_block_ids
    _check_ids(s_ids, src, "source", meta.request_id)
    _check_ids(d_ids, dst, "destination", meta.request_id)
    if src.same_layout(dst):
        if meta.num_tokens > len(s_ids) * src.block_size:
            raise TransferError(f"{meta.request_id}: {meta.num_tokens} tokens do not fit {len(s_ids)} blocks")
        if len(s_ids) != len(d_ids):
            raise TransferError(f"{meta.request_id}: {len(s_ids)} source blocks vs {len(d_ids)} destination blocks")
        src_runs, dst_runs = s_ids.runs, d_ids.runs
        src_bytes = flat_bytes(pool) if pool_bytes is None else pool_bytes
    else:
        need = math.ceil(meta.num_tokens / dst.block_size)
        if len(d_ids) != need:
            raise TransferError(f"{meta.request_id}: {meta.num_tokens} tokens need {need} destination blocks of {dst.block_size}, got {len(d_ids)}")
        try:
            staged = convert.repack(pool, s_ids.tolist(), meta.num_tokens, dst, config.dst_head_offset)
        except ValueError as e:
            raise TransferError(f"{meta.request_id}: {e}") from None
        src_runs, dst_runs = ((0, need),) if need else (), d_ids.runs
        src_bytes = flat_bytes(staged)
    try:
        runs = coalesce_runs(src_runs, dst_runs)
    except ValueError as e:
        raise TransferError(f"{meta.request_id}: {e}") from None
    return PreparedTransfer(src_bytes, runs, dst.block_bytes, config.min_unit_bytes, config.max_unit_bytes)


def check_landing(meta: TransferMeta, spec: PoolSpec) -> None:
    """Receiver-side check of a meta read off the wire."""
    _check_ids(meta.dst_block_ids, spec, "destination", meta.request_id)
    if meta.num_tokens > len(meta.dst_block_ids) * spec.block_size:
        raise TransferError(f"{meta.request_id}: {meta.num_tokens} tokens do not fit {len(meta.dst_block_ids)} destination blocks")
