"""Flattened model inputs of one step, built on the host from the
scheduler's output and moved to the device in ONE copy.

Sequence s contributes tokens [num_computed, num_computed + num_new) of its
history. Positions: prompt tokens take their precomputed M-RoPE positions,
generated tokens index + rope_delta on all three axes. Slots come from the
request's block list. Only rows that end a request's known tokens are kept
for logits (`logits_indices`), in `sample_requests` order.

Host cost matters as much as the kernels at batch 256 (a decode step's GPU
work is ~2 ms), so the builder touches each request only to read a few
scalars; everything else is numpy over the whole batch, written into one
persistent staging buffer (pinned on CUDA) that is copied to the device in
one non-blocking transfer. int32 fields live in the same int64 buffer
(reinterpreted), so no conversion kernels run either. Per-request loops
remain only for requests still in their prompt (positions, images).
"""
from __future__ import annotations

from dataclasses import dataclass, field
from operator import attrgetter

import numpy as np
import torch

from inference.engine.request import PENDING, Request
from inference.engine.scheduler import SchedulerOutput
from inference.layers.attention import AttentionMetadata
from inference.worker.block_table import BlockTable


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
    all_rows_sample: bool = False    # S == T and logits_indices == arange(T): no gather needed
    # rows whose input token is still on the device (async steps) and the request of each
    pending_rows: list[int] = field(default_factory=list)
    pending_requests: list[Request] = field(default_factory=list)
    q_lens: list[int] = field(default_factory=list)  # new tokens per sequence (host copy of cu_seqlens_q's steps)

    @property
    def num_tokens(self) -> int:
        return int(self.input_ids.shape[0])


_request, _num_new = attrgetter("request"), attrgetter("num_new_tokens")
_request_id, _block_ids = attrgetter("request_id"), attrgetter("block_ids")
_SCALARS = [attrgetter(name) for name in
            ("num_computed_tokens", "num_tokens", "num_pending", "num_prompt_tokens", "prompt.rope_delta")]


def _has_images_in(req: Request, start: int, end: int) -> bool:
    index = req.prompt.image_token_index
    return index is not None and index.numel() > 0 and start <= int(index[-1]) and end > int(index[0])


def _int32_words(n: int) -> int:
    """int64 words that hold n int32 values."""
    return (n + 1) // 2


class InputBatchBuilder:
    """Owns the staging buffer; build() is called once per step."""

    def __init__(self, block_size: int, device: torch.device):
        self.block_size = block_size
        self.device = device
        self._pin = device.type == "cuda"
        self._stage = torch.empty(0, dtype=torch.int64)
        self._copied: torch.cuda.Event | None = None  # last H2D out of the staging buffer
        self.block_table = BlockTable()  # carried across steps (block_table.py)

    def release(self, request_ids) -> None:
        """The engine let these requests go (finished, preempted, aborted), in
        this step or an earlier one: called every step, before build() and also
        when the step builds no batch, so their carried block-table rows are dropped."""
        self.block_table.forget(request_ids)

    def _staging(self, words: int) -> np.ndarray:
        if self._copied is not None:
            self._copied.synchronize()  # the previous step's copy may still read the buffer
        if self._stage.numel() < words:
            self._stage = torch.empty(max(words, 2 * self._stage.numel()), dtype=torch.int64, pin_memory=self._pin)
        return self._stage.numpy()

    def build(self, sched: SchedulerOutput) -> InputBatch:
        items = sched.scheduled
        reqs = list(map(_request, items))
        num_seqs = len(items)
        num_new = np.fromiter(map(_num_new, items), np.int64, num_seqs)
        # C-level getters: no Python frame per request
        starts, num_known, num_pending, num_prompt, deltas = (
            np.fromiter(map(get, reqs), np.int64, num_seqs) for get in _SCALARS)
        ends = starts + num_new
        cu_q = np.zeros(num_seqs + 1, np.int64)
        np.cumsum(num_new, out=cu_q[1:])
        num_tokens = int(cu_q[-1])
        block_lists = list(map(_block_ids, reqs))
        block_lens = np.fromiter(map(len, block_lists), np.int64, num_seqs)
        width = max(int(block_lens.max()), 1)

        # Layout of the staging buffer (int64 words): ids, positions (3 rows), slots, logits rows,
        # then int32 fields packed two per word: seq_lens, cu_seqlens_q, block_tables.
        samples = ends == num_known
        num_samples = int(samples.sum())
        # Each field starts on a 16-byte boundary (an even word): Triton specialises a kernel on
        # whether each pointer argument is 16-byte aligned, so fields at odd words would build
        # (and on a fresh machine compile, ~0.8 s each) more variants as batch sizes change.
        lengths = [num_tokens, 3 * num_tokens, num_tokens, num_samples,
                   _int32_words(num_seqs), _int32_words(num_seqs + 1), _int32_words(num_seqs * width)]
        offsets = np.concatenate([[0], np.cumsum([n + (n & 1) for n in lengths])]).tolist()
        field = lambda buf, i: buf[offsets[i]:offsets[i] + lengths[i]]  # noqa: E731
        stage = self._staging(offsets[-1])
        ids, positions, slots, logits_rows = (field(stage, i) for i in range(4))
        seq_lens_32 = field(stage, 4).view(np.int32)[:num_seqs]
        cu_q_32 = field(stage, 5).view(np.int32)[:num_seqs + 1]
        tables = field(stage, 6).view(np.int32)[:num_seqs * width].reshape(num_seqs, width)
        positions = positions.reshape(3, num_tokens)

        seq_of_token = np.repeat(np.arange(num_seqs), num_new)
        token_index = np.arange(num_tokens) + np.repeat(starts - cu_q[:-1], num_new)  # index in its request
        tables[:] = self.block_table.build(list(map(_request_id, reqs)), block_lists, block_lens)[:, :width]
        slots[:] = tables[seq_of_token, token_index // self.block_size].astype(np.int64) * self.block_size \
            + token_index % self.block_size
        seq_lens_32[:] = ends
        cu_q_32[:] = cu_q
        logits_rows[:] = cu_q[1:][samples] - 1

        # Generated tokens: index + rope_delta on all axes; prompt tokens are overwritten below.
        positions[:] = token_index + np.repeat(deltas, num_new)
        image_chunks = []
        if num_tokens == num_seqs:  # decode: one token each, read straight from each history
            # the last num_pending tokens of a history are placeholders (PENDING): only known ones are read
            ids[:] = PENDING
            known = np.nonzero(starts < num_known - num_pending)[0].tolist()
            at = starts.tolist()
            ids[known] = np.fromiter((reqs[s].token_buffer[at[s]] for s in known), np.int64, len(known))
        else:
            ids[:] = np.concatenate([r.token_buffer[s:e] for r, s, e in zip(reqs, starts.tolist(), ends.tolist())])
        pending_rows = np.nonzero(ids < 0)[0].tolist()  # placeholders: the previous step's tokens
        for s in np.nonzero(starts < num_prompt)[0].tolist():
            req, start, end, row = reqs[s], int(starts[s]), int(ends[s]), int(cu_q[s])
            stop = min(end, req.num_prompt_tokens)
            positions[:, row:row + stop - start] = req.prompt.positions[:, start:stop].numpy()
            if _has_images_in(req, start, end):
                image_chunks.append(ImageChunk(req, row, start, end))

        dev = self._to_device(self._stage[:offsets[-1]])
        return InputBatch(
            input_ids=field(dev, 0),
            positions=field(dev, 1).view(3, num_tokens),
            meta=AttentionMetadata(
                is_decode=num_tokens == num_seqs,
                slot_mapping=field(dev, 2),
                block_tables=field(dev, 6).view(torch.int32)[:num_seqs * width].view(num_seqs, width),
                seq_lens_k=field(dev, 4).view(torch.int32)[:num_seqs],
                cu_seqlens_q=field(dev, 5).view(torch.int32)[:num_seqs + 1],
                max_seqlen_q=int(num_new.max()), max_seqlen_k=int(ends.max()),
            ),
            logits_indices=field(dev, 3),
            sample_requests=[reqs[i] for i in np.nonzero(samples)[0].tolist()],
            image_chunks=image_chunks,
            all_rows_sample=num_samples == num_tokens,
            pending_rows=pending_rows,
            pending_requests=[reqs[i] for i in seq_of_token[pending_rows].tolist()] if pending_rows else [],
            q_lens=num_new.tolist(),
        )

    def _to_device(self, host: torch.Tensor) -> torch.Tensor:
        if self.device.type == "cpu":
            return host.clone()  # the staging buffer is reused next step
        dev = host.to(self.device, non_blocking=True)
        self._copied = torch.cuda.Event()
        self._copied.record()
        return dev

