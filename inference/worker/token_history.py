"""Device-resident token history for penalties and no-repeat n-gram bans.

Why on the device: the document workload sets presence/frequency penalties
and no_repeat_ngram_size=100 on every block request. Rebuilding padded
history tensors on the host and scanning each history for repeated n-grams
in Python costs ~10 us a request a step, 5 ms a step at 500 running
requests, more than the GPU spends on that step.

State, per request that needs it (a slot):
  hist[slot, :L]  its tokens, prompt then outputs (L = request.num_tokens);
  match[slot, j]  for j <= L-2: the length, capped at n-1, of the longest
                  common suffix of tokens[:j+1] and tokens[:L].
Appending token x at position L is one vectorised update for all rows:
  match'[j] = min(match[j-1] + 1, n-1) if tokens[j] == x else 0, j <= L-1
(match[-1] = 0). The tokens completing an n-gram seen before are then
{tokens[j+1] : j <= L-2, match[j] >= n-1}: exactly those whose n-1 tokens
before them equal the last n-1 tokens (n = 1 bans every token seen).

Consistency: a slot remembers its request object and length; whenever the
host history differs (new request, recompute after preemption, KV that came
from a prefill worker) the slot is reloaded from the host, so the device copy
cannot drift. `release()` frees slots of requests the engine let go.

Host state per slot lives in numpy arrays (length, n-gram size, penalty
parameters), so a step at 500 rows reads them with one take instead of a
Python pass over the requests; slots() finds the slots of requests already
seen through a dict keyed by the request object and walks in Python only
the rows that need a new slot or a reload.
"""
from __future__ import annotations

from itertools import repeat
from operator import attrgetter

import numpy as np
import torch

from inference.engine.request import PENDING, Request
from inference.h2d import to_device


def suffix_match(tokens: np.ndarray, cap: int) -> np.ndarray:
    """match[j], j <= L-2, for a history loaded at once (see module doc)."""
    length = len(tokens)
    match = np.zeros(max(length - 1, 0), dtype=np.int64)
    if length < 2 or cap <= 0:
        return match
    last = tokens[-1]
    for j in np.nonzero(tokens[: length - 1] == last)[0].tolist():
        span = min(cap, j + 1)
        a = tokens[j + 1 - span: j + 1][::-1]
        b = tokens[length - span:][::-1]
        diff = np.nonzero(a != b)[0]
        match[j] = diff[0] if diff.size else span
    return match


def _scatter_index(parts: list[tuple[int, np.ndarray]]) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(rows, columns, values) int64 that write each (slot, values) part at [slot, :len(values)]."""
    if not parts:
        return (np.zeros(0, np.int64),) * 3
    lengths = [len(v) for _, v in parts]
    rows = np.repeat(np.array([s for s, _ in parts], np.int64), lengths)
    cols = np.concatenate([np.arange(n, dtype=np.int64) for n in lengths])
    return rows, cols, np.concatenate([np.asarray(v, np.int64) for _, v in parts])


_num_tokens = attrgetter("num_tokens")


class TokenHistory:
    def __init__(self, device: torch.device, max_len: int = 16384):
        self.device = device
        self.max_len = max_len
        self.capacity, self.width = 0, 0
        self.hist = torch.zeros(0, 0, dtype=torch.long, device=device)
        self.match = torch.zeros(0, 0, dtype=torch.int32, device=device)
        self.slot_of: dict[str, int] = {}
        self.slot_of_request: dict[Request, int] = {}  # the same slots keyed by their owner (identity)
        self.owner: list[Request | None] = []
        self.length = np.zeros(0, dtype=np.int64)  # tokens loaded per slot, -1 = to load
        self.ngram = np.zeros(0, dtype=np.int64)  # owner's no_repeat_ngram_size
        self.penalties = np.zeros((0, 4), dtype=np.float32)  # owner's apply_penalties params: repetition, frequency, presence, prompt length
        self.free: list[int] = []
        self.generation = 0  # bumped when hist/match are reallocated (captured sampler graphs read them)
        self._scratch: int | None = None

    def scratch_slot(self) -> int:
        """A slot no request ever gets: padding rows of a fixed-shape sampler
        step read and write it (length 0, so it bans and penalises nothing)."""
        if self._scratch is None:
            self._ensure_width(1)
            if not self.free:
                self._resize(max(16, 2 * self.capacity), self.width)
            self._scratch = self.free.pop()
        return self._scratch

    def _resize(self, capacity: int, width: int) -> None:
        hist = torch.zeros(capacity, width, dtype=torch.long, device=self.device)
        match = torch.zeros(capacity, width, dtype=torch.int32, device=self.device)
        hist[: self.capacity, : self.width] = self.hist
        match[: self.capacity, : self.width] = self.match
        self.hist, self.match = hist, match
        self.free.extend(range(capacity - 1, self.capacity - 1, -1))  # pop() hands out low slots first
        self.owner.extend([None] * (capacity - self.capacity))
        grow = capacity - self.capacity
        self.length = np.concatenate([self.length, np.full(grow, -1, dtype=np.int64)])
        self.ngram = np.concatenate([self.ngram, np.zeros(grow, dtype=np.int64)])
        self.penalties = np.concatenate([self.penalties, np.zeros((grow, 4), dtype=np.float32)])
        self.capacity, self.width = capacity, width
        self.generation += 1

    def reserve(self, capacity: int, width: int) -> None:
        """Room for `capacity` slots of `width` tokens now, in one allocation: a run that stays within
        it never reallocates (each reallocation drops the captured sampler graphs that read hist)."""
        if capacity > self.capacity or width > self.width:
            self._resize(max(capacity, self.capacity), max(width, self.width))

    def _ensure_width(self, length: int) -> None:
        if length > self.width:
            width = self.width or 256
            while width < length:
                width *= 2
            self._resize(self.capacity, max(width, length))

    def slots(self, reqs: list[Request]) -> np.ndarray:
        """Slot per request (int64 array), allocated and loaded as needed."""
        lengths = np.fromiter(map(_num_tokens, reqs), np.int64, len(reqs))
        self._ensure_width(int(lengths.max()) + 1)
        out = np.fromiter(map(self.slot_of_request.get, reqs, repeat(-1)), np.int64, len(reqs))
        for i in np.nonzero(out < 0)[0].tolist():
            out[i] = self._adopt(reqs[i])
        stale = np.nonzero(self.length[out] != lengths)[0].tolist()
        if stale:  # after the walk: a resize in _adopt reallocates hist and match
            self._load([(int(out[i]), reqs[i]) for i in stale])
        return out

    def _adopt(self, req: Request) -> int:
        """A slot for a request not seen before (or a new object under a known id), to be loaded."""
        slot = self.slot_of.get(req.request_id)
        if slot is None:
            if not self.free:
                self._resize(max(16, 2 * self.capacity), self.width)
            slot = self.free.pop()
            self.slot_of[req.request_id] = slot
        else:
            self.slot_of_request.pop(self.owner[slot], None)
        self.owner[slot] = req
        self.slot_of_request[req] = slot
        self.length[slot] = -1
        params = req.sampling
        self.ngram[slot] = params.no_repeat_ngram_size
        self.penalties[slot] = (params.repetition_penalty, params.frequency_penalty, params.presence_penalty,
                                req.num_prompt_tokens)
        return slot

    def _load(self, todo: list[tuple[int, Request]]) -> None:
        """Histories of (slot, request) pairs from the host, in one upload and two scattered writes
        (a prefill step brings a dozen new requests: two uploads each cost ~2 ms of host a step)."""
        for _, req in todo:  # all checked first: no slot is marked loaded unless all of them load
            if (req.token_ids == PENDING).any():
                raise RuntimeError(f"request {req.request_id}: history loaded while a sampled token is still pending")
        hist_parts, match_parts = [], []
        for slot, req in todo:
            tokens = req.token_ids
            hist_parts.append((slot, tokens))
            cap = req.sampling.no_repeat_ngram_size - 1
            if cap > 0:
                match_parts.append((slot, suffix_match(tokens, cap)))
        hist_ix, match_ix = _scatter_index(hist_parts), _scatter_index(match_parts)
        packed = to_device(np.concatenate([*hist_ix, *match_ix]), self.device)
        n_hist, n_match = len(hist_ix[0]), len(match_ix[0])
        rows, cols, vals, mrows, mcols, mvals = packed.split([n_hist] * 3 + [n_match] * 3)
        self.hist[rows, cols] = vals
        if n_match:
            self.match[mrows, mcols] = mvals.to(torch.int32)
        for slot, tokens in hist_parts:
            self.length[slot] = len(tokens)

    def release(self, request_ids) -> None:
        for request_id in request_ids:
            slot = self.slot_of.pop(request_id, None)
            if slot is not None:
                self.slot_of_request.pop(self.owner[slot], None)
                self.owner[slot], self.length[slot] = None, -1
                self.free.append(slot)

    def rows(self, slots: torch.Tensor, width: int) -> torch.Tensor:
        return self.hist[slots, :width]

    def banned_tokens(self, slots: torch.Tensor, lengths: torch.Tensor, ngram: torch.Tensor, width: int,
                      vocab: int) -> torch.Tensor:
        """[S, max(width, 1)] token ids that would complete a repeated n-gram
        (ngram 0 = none); padding entries hold `vocab` (a scratch column for
        the caller's sparse write). Repeats are harmless."""
        out = torch.full((len(slots), max(width, 1)), vocab, dtype=torch.long, device=self.device)
        if width >= 2:
            pos = torch.arange(width - 1, device=self.device)[None, :]
            hit = (self.match[slots, : width - 1] >= (ngram - 1)[:, None]) & (pos < (lengths - 1)[:, None])
            hit &= (ngram > 0)[:, None]
            out[:, : width - 1] = torch.where(hit, self.hist[slots, 1:width], vocab)
        first = (ngram == 1) & (lengths > 0)  # n = 1: the first token too
        out[:, -1] = torch.where(first, self.hist[slots, 0], out[:, -1])
        return out

    def record(self, slots: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, ngram: torch.Tensor,
               slot_list: np.ndarray, width: int) -> None:
        """Append tokens[i] at position lengths[i] of slot slots[i]; update match rows.
        width: the longest of these histories before the append (the caller has it from slots())."""
        self.record_device(slots, tokens, lengths, ngram, width)
        self.advance(slot_list)

    def advance(self, slot_list: np.ndarray) -> None:
        """Host bookkeeping of record(): each slot's history is one token longer (slots are distinct)."""
        self.length[slot_list] += 1

    def record_device(self, slots: torch.Tensor, tokens: torch.Tensor, lengths: torch.Tensor, ngram: torch.Tensor,
                      width: int) -> None:
        """The device half of record(): no host data read, so it can be graph-captured (width is
        a shape: any value >= the longest history works, positions past a row's length stay 0)."""
        self.hist[slots, lengths] = tokens
        width += 1
        caps = (ngram - 1).clamp(min=0)
        old = self.match[slots, :width]
        eq = self.hist[slots, :width] == tokens[:, None]
        shifted = torch.cat([torch.zeros_like(old[:, :1]), old[:, :-1]], dim=1) + 1
        new = torch.where(eq, torch.minimum(shifted, caps[:, None].to(old.dtype)), torch.zeros_like(old))
        pos = torch.arange(width, device=self.device)[None, :]
        new = torch.where((pos < lengths[:, None]) & (caps > 0)[:, None], new, torch.zeros_like(old))
        self.match[slots, :width] = new
