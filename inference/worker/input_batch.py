"""Flattened model inputs of one step, built on the host from the
scheduler's output and moved to the device in one go.

Sequence s contributes tokens [num_computed, num_computed + num_new) of its
history. Positions: prompt tokens take their precomputed M-RoPE positions,
generated tokens index + rope_delta on all three axes. Slots come from the
request's block list. Only rows that end a request's known tokens are kept
for logits (`logits_indices`), in `sample_requests` order.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from inference.engine.request import Request
from inference.engine.scheduler import SchedulerOutput
from inference.layers.attention import AttentionMetadata


@dataclass
class ImageChunk:
    request: Request
    row_offset: int      # batch row of the chunk's first token
    start: int           # chunk = request tokens [start, end)
    end: int


@dataclass
class InputBatch:
    input_ids: torch.Tensor          # [T] int64
    positions: torch.Tensor          # [3, T] int64
    meta: AttentionMetadata
    logits_indices: torch.Tensor     # [S] int64 rows whose logits are sampled
    sample_requests: list[Request]   # S requests, in logits row order
    image_chunks: list[ImageChunk]   # chunks that contain image tokens

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


def _positions(req: Request, start: int, end: int) -> torch.Tensor:
    prompt_len = req.num_prompt_tokens
    parts = []
    if start < prompt_len:
        parts.append(req.prompt.positions[:, start:min(end, prompt_len)])
    if end > prompt_len:
        gen = torch.arange(max(start, prompt_len), end, dtype=torch.long) + req.rope_delta
        parts.append(gen.expand(3, -1))
    return parts[0] if len(parts) == 1 else torch.cat(parts, dim=1)


def _has_images_in(req: Request, start: int, end: int) -> bool:
    index = req.prompt.image_token_index
    return index is not None and index.numel() > 0 and start <= int(index[-1]) and end > int(index[0])


def build_input_batch(sched: SchedulerOutput, block_size: int, device: torch.device) -> InputBatch:
    items = sched.scheduled
    num_seqs = len(items)
    max_blocks = max(len(item.request.block_ids) for item in items)
    block_tables = np.zeros((num_seqs, max_blocks), dtype=np.int32)
    ids, positions, slots = [], [], []
    cu_q, seq_lens, logits_rows, sample_reqs, image_chunks = [0], [], [], [], []
    for s, item in enumerate(items):
        req, start = item.request, item.request.num_computed_tokens
        end = start + item.num_new_tokens
        block_tables[s, : len(req.block_ids)] = req.block_ids
        ids.append(req.token_ids[start:end])
        positions.append(_positions(req, start, end))
        index = np.arange(start, end)
        slots.append(block_tables[s, index // block_size].astype(np.int64) * block_size + index % block_size)
        if _has_images_in(req, start, end):
            image_chunks.append(ImageChunk(req, cu_q[-1], start, end))
        cu_q.append(cu_q[-1] + end - start)
        seq_lens.append(end)
        if item.samples:
            logits_rows.append(cu_q[-1] - 1)
            sample_reqs.append(req)
    max_q = max(item.num_new_tokens for item in items)
    meta = AttentionMetadata(
        is_decode=max_q == 1,
        slot_mapping=torch.from_numpy(np.concatenate(slots)).to(device, non_blocking=True),
        block_tables=torch.from_numpy(block_tables).to(device, non_blocking=True),
        seq_lens_k=torch.tensor(seq_lens, dtype=torch.int32).to(device, non_blocking=True),
        cu_seqlens_q=torch.tensor(cu_q, dtype=torch.int32).to(device, non_blocking=True),
        max_seqlen_q=max_q, max_seqlen_k=max(seq_lens),
    )
    return InputBatch(
        input_ids=torch.from_numpy(np.concatenate(ids)).to(device, non_blocking=True),
        positions=torch.cat(positions, dim=1).to(device, non_blocking=True),
        meta=meta,
        logits_indices=torch.tensor(logits_rows, dtype=torch.long).to(device, non_blocking=True),
        sample_requests=sample_reqs,
        image_chunks=image_chunks,
    )
