"""Paged KV block allocation: a free list plus a reference count per block.

A block is free iff its count is 0; `incref` lets another holder (a KV
transfer lease, a shared prefix) keep blocks alive past the request. Block
ids index dim 0 of the KV pool.
"""
from __future__ import annotations

from collections import deque


class BlockManager:
    def __init__(self, num_blocks: int, block_size: int):
        self.num_blocks = num_blocks
        self.block_size = block_size
        self.ref_counts = [0] * num_blocks
        self.free_blocks: deque[int] = deque(range(num_blocks))
        # The engine bumps `epoch` before each step it launches; a block freed while
        # that step may still run gets its epoch, so a writer from outside the engine's
        # stream (a KV transfer) knows whether it must wait for that step (freed_since).
        self.epoch = 0
        self.freed_epoch = [-1] * num_blocks

    @property
    def num_free_blocks(self) -> int:
        return len(self.free_blocks)

    def blocks_for(self, num_tokens: int) -> int:
        return -(-num_tokens // self.block_size)

    def num_new_blocks(self, block_ids: list[int], num_tokens: int) -> int:
        return max(self.blocks_for(num_tokens) - len(block_ids), 0)

    def allocate(self, block_ids: list[int], num_tokens: int) -> bool:
        """Grow block_ids (in place) to hold num_tokens; all or nothing."""
        needed = self.num_new_blocks(block_ids, num_tokens)
        if needed > len(self.free_blocks):
            return False
        for _ in range(needed):
            block = self.free_blocks.popleft()
            assert self.ref_counts[block] == 0, f"block {block} on the free list is referenced"
            self.ref_counts[block] = 1
            block_ids.append(block)
        return True

    def incref(self, block_ids: list[int]) -> None:
        for block in block_ids:
            assert self.ref_counts[block] > 0, f"incref of free block {block}"
            self.ref_counts[block] += 1

    def free(self, block_ids: list[int]) -> None:
        """Drop one reference to each block (in place: block_ids is emptied)."""
        # In list order: blocks go back (and are handed out again) in the order they
        # were held, so later requests get runs of consecutive ids, which the KV
        # transfer and the control messages carry as (first, count) runs.
        for block in block_ids:
            assert self.ref_counts[block] > 0, f"double free of block {block}"
            self.ref_counts[block] -= 1
            if self.ref_counts[block] == 0:
                self.free_blocks.append(block)
                self.freed_epoch[block] = self.epoch
        block_ids.clear()

    def freed_since(self, block_ids: list[int], epoch: int) -> bool:
        """Was any of these blocks freed at or after `epoch`?"""
        freed = self.freed_epoch
        return any(freed[b] >= epoch for b in block_ids)

    def check_invariants(self) -> None:
        free = set(self.free_blocks)
        assert len(free) == len(self.free_blocks), "a block is on the free list twice"
        for block, count in enumerate(self.ref_counts):
            assert count >= 0 and (count == 0) == (block in free), f"block {block}: count {count}, free {block in free}"
