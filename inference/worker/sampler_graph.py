"""Greedy sampling with penalties and n-gram bans as one fixed-shape step,
replayed as a CUDA graph.

Why: the document workload sets presence/frequency penalties and
no_repeat_ngram_size on every block request, so the eager sampler runs ~75
small kernels a step (penalties ~30, n-gram bans ~20, history update ~22).
Their launch cost on the host (tens of microseconds each on the H200's host)
made the sampler the largest host cost of a decode step. Captured, they are
one graph launch plus one upload and a logits copy.

The step: logits [S, V] of S greedy requests -> tokens [S], and each
request's device history (TokenHistory) advanced by its token, exactly as
Sampler.__call__ does it eagerly. Shapes are fixed per key: rows padded to
a bucket (cuda_graph.bucket_sizes), the history width taken as the
TokenHistory's capacity minus one (record_device needs one column beyond the
longest history; masks by length make the wider width exact). Padding rows
and plain-greedy rows use the history's scratch slot with length 0, n-gram
0 and neutral penalties (1, 0, 0): their logits pass unchanged and what they
record lands in the scratch slot. Graphs are keyed by (rows, width, vocab,
logits dtype, history generation): a history resize reallocates the tensors
a graph read, so graphs of an older generation are never replayed.

Capture: warm-up and capture run with every row on the scratch slot, so no
real history is touched twice; the real rows are copied in afterwards and
the graph replayed. A capture that fails is logged once and the sampler
stays eager from then on. capture=False runs the same static path eagerly
(how CPU tests check it against the eager sampler).

On by default in graph mode; DOCPIPE_SAMPLER_GRAPHS=0 keeps the sampler eager
(debugging, A/B). tests/inference/worker/test_sampler_graph.py checks captured
against eager on random batches on the GPU (passed on the H200, session 5);
there the decode step's host launch went 4.29-4.44 -> 3.99 ms in one call
(inference/bench/results/session5/c1_*).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import torch

from inference.engine.request import Request
from inference.env import env_flag
from inference.worker.cuda_graph import bucket_sizes
from inference.worker.graph_capture import capture_buckets, capture_into
from inference.h2d import to_device
from inference.worker.sampler import apply_penalties, scratch_work

log = logging.getLogger(__name__)
ENV = "DOCPIPE_SAMPLER_GRAPHS"
NEUTRAL = [1.0, 0.0, 0.0, 0.0]  # repetition, frequency, presence penalty, prompt length
_is_greedy = attrgetter("is_greedy")
_is_plain_greedy = attrgetter("is_plain_greedy")


def requested() -> bool:
    return env_flag(ENV, default=True)


@dataclass
class _Buffers:
    logits: torch.Tensor   # [B, V] in the logits' dtype
    ints: torch.Tensor     # [3, B] int64: slots, lengths, n-gram sizes
    params: torch.Tensor   # [B, 4] fp32: apply_penalties' params
    out: torch.Tensor      # [B] int64 tokens


@dataclass
class _Rows:
    """What can_run and run read from a batch's requests, kept while the batch samples the same
    requests in the same order (steady decode), so those passes run once per composition."""
    reqs: list[Request]          # a copy of the batch's list (compared by identity: no __eq__)
    graphable: bool              # all greedy, and some row reads history
    rows: np.ndarray             # [R] int64 the rows that read history (none unless all greedy)
    history_reqs: list[Request]  # their requests


class SamplerGraphs:
    def __init__(self, sampler, max_rows: int, capture: bool = True, logits: tuple | None = None):
        """logits: (vocab, dtype) of the model's logits, for capture_all (None: capture on first use)."""
        self.sampler, self.history, self.device = sampler, sampler.history, sampler.device
        self.logits = tuple(logits) if logits is not None else None  # compared with key[2:4] each step
        self.all_at_once = False  # set by capture_all: after a history widening, every bucket again at once
        self.buckets = bucket_sizes(max_rows)
        self.capture = capture and self.device.type == "cuda"
        self.enabled = True
        self.buffers: dict[tuple, _Buffers] = {}
        self.graphs: dict[tuple, torch.cuda.CUDAGraph] = {}
        self.pool = None
        # made once: torch.tensor(..., device=cuda) from a list is a pageable copy, which waits for
        # every kernel queued before it (new buffers are made mid-run, when the history widens)
        self.neutral_row = to_device([NEUTRAL], self.device, torch.float32)
        self._last = _Rows([], False, np.zeros(0, np.int64), [])

    def _rows(self, reqs: list[Request]) -> _Rows:
        """The batch's _Rows, computed again only when its requests differ from the last call's."""
        if reqs != self._last.reqs:  # per request by identity (no __eq__): C-level, stops at a difference
            snapshot, greedy = list(reqs), all(map(_is_greedy, reqs))
            plain = np.fromiter(map(_is_plain_greedy, reqs), bool, len(reqs)) if greedy else np.ones(0, bool)
            rows = np.nonzero(~plain)[0]
            history_reqs = snapshot if rows.size == len(reqs) else [snapshot[i] for i in rows.tolist()]
            self._last = _Rows(snapshot, rows.size > 0, rows, history_reqs)
        return self._last

    def can_run(self, reqs: list[Request]) -> bool:
        return self.enabled and 0 < len(reqs) <= self.buckets[-1] and self._rows(reqs).graphable

    def run(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor | None:
        """Tokens [S] (and histories advanced), or None when the step must run eagerly."""
        num = len(reqs)
        size = next(b for b in self.buckets if b >= num)
        scratch = self.history.scratch_slot()
        batch = self._rows(reqs)
        rows, slots = batch.rows, self.history.slots(batch.history_reqs)  # slots() may resize
        # one upload: slots, lengths, n-gram sizes [3, size] int64, then the penalty rows [size, 4]
        # fp32 in the next 2 * size words; padding and plain-greedy rows stay neutral on the scratch slot
        host = np.zeros(5 * size, dtype=np.int64)
        ints, params = host[:3 * size].reshape(3, size), host[3 * size:].view(np.float32).reshape(size, 4)
        ints[0] = scratch
        ints[:, rows] = (slots, self.history.length[slots], self.history.ngram[slots])
        params[:] = NEUTRAL
        params[rows] = self.history.penalties[slots]
        key = self._key(size, logits.shape[1], logits.dtype)
        missing = self.capture and key not in self.graphs
        if missing and self.all_at_once and key[2:4] == self.logits:
            self.capture_all()  # the history widened past its reservation: one stall for every bucket
            if key not in self.graphs:  # that capture failed (logged, sampler eager from now on)
                return None
            missing = False
        buf = self._buffers(key, scratch)
        if missing and not self._capture(key, buf, scratch):
            return None
        packed = to_device(torch.from_numpy(host), self.device)
        buf.ints.copy_(packed[:3 * size].view(3, size))
        buf.params.copy_(packed[3 * size:].view(torch.float32).view(size, 4))
        buf.logits[:num].copy_(logits)
        if self.capture:
            self.graphs[key].replay()
        else:
            self._step(buf, key[1])
        self.history.advance(slots)
        return buf.out[:num].clone()

    def capture_all(self) -> int:
        """Engine start: the step of every rows bucket at the history's width (reserve() it first),
        largest first; again, all at once, the first time a step meets a widened history (which drops
        them). Keys differ in their rows bucket, so they sort without comparing dtypes. Returns how
        many were captured."""
        if not (self.capture and self.enabled and self.logits):
            return 0
        self.all_at_once = True
        scratch = self.history.scratch_slot()
        vocab, dtype = self.logits

        def capture_one(key: tuple) -> bool:
            return self._capture(key, self._buffers(key, scratch), scratch)
        return capture_buckets(self, [self._key(size, vocab, dtype) for size in self.buckets], capture_one)

    def _key(self, size: int, vocab: int, dtype: torch.dtype) -> tuple:
        """A step graph's key: rows bucket, history width read, logits shape and dtype, history tensors."""
        return (size, self.history.width - 1, vocab, dtype, self.history.generation)

    def _buffers(self, key: tuple, scratch: int) -> _Buffers:
        if key not in self.buffers:
            if any(k[4] != key[4] for k in self.buffers):  # older history tensors: drop what read them
                self.buffers = {k: b for k, b in self.buffers.items() if k[4] == key[4]}
                self.graphs = {k: g for k, g in self.graphs.items() if k[4] == key[4]}  # (capture_into:
                # a pool whose last graph went is not captured into again)
            size, _, vocab, dtype, _ = key
            buf = _Buffers(torch.zeros(size, vocab, dtype=dtype, device=self.device),
                           torch.empty(3, size, dtype=torch.long, device=self.device),
                           torch.empty(size, 4, dtype=torch.float32, device=self.device),
                           torch.zeros(size, dtype=torch.long, device=self.device))
            self._neutral(buf, scratch)
            self.buffers[key] = buf
        return self.buffers[key]

    def _neutral(self, buf: _Buffers, scratch: int) -> None:
        """Every row on the scratch slot, length 0, no n-gram ban, neutral penalties."""
        buf.ints.zero_()
        buf.ints[0] = scratch
        buf.params.copy_(self.neutral_row.expand_as(buf.params))

    def _step(self, buf: _Buffers, width: int) -> None:
        """The captured work: reads only device buffers (no host data), so a replay is the same step."""
        size, vocab = buf.logits.shape
        index = torch.arange(size, device=self.device)
        slots, lengths, ngram = buf.ints[0], buf.ints[1], buf.ints[2]
        work = scratch_work(buf.logits)
        apply_penalties(work, index, buf.params, self.history.rows(slots, width), lengths)
        self.sampler.ban_ngrams(work, index, slots, lengths, ngram, width)
        tokens = work[:, :vocab].argmax(dim=-1)
        self.history.record_device(slots, tokens, lengths, ngram, width)
        buf.out.copy_(tokens)

    def _capture(self, key: tuple, buf: _Buffers, scratch: int) -> bool:
        """Capture the step of `key` (rows on the scratch slot while warming up). False: stay eager."""
        self._neutral(buf, scratch)
        return capture_into(self, key, lambda: self._step(buf, key[1]), self.device, f"sampler step {key[:4]}", log)
