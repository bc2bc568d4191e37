"""Batched sampler: logits [S, V] of the requests that sample this step ->
token ids [S]. Semantics in inference.sampling.

Pure greedy batches without penalties are one argmax on the device.
Otherwise vectorised over the batch. Penalties and n-gram bans read each
request's token history from a device-resident copy (TokenHistory, updated
with every sampled token), so no per-step host work grows with history
length; only a few per-row parameters are sent each step. Both touch only
the logits of tokens in a history (sparse writes into one fp32 copy), so
their device work grows with history length, not with the vocabulary. Draws use the exponential race (argmax p / q with
q ~ Exp(1)), so a seeded request draws its q from its own generator and its
tokens do not depend on the rest of the batch.
"""
from __future__ import annotations

from dataclasses import dataclass
from operator import attrgetter

import numpy as np
import torch

from inference.engine.request import Request
from inference.h2d import to_device
from inference.worker.token_history import TokenHistory

_is_greedy, _is_plain_greedy = attrgetter("is_greedy"), attrgetter("is_plain_greedy")


def apply_penalties(work: torch.Tensor, rows: torch.Tensor, params: torch.Tensor, history: torch.Tensor,
                    lengths: torch.Tensor) -> None:
    """Repetition (prompt + output tokens), frequency and presence (output
    tokens) penalties, in place on `work` [S, V+1] fp32 (column V is a
    scratch column); rows [R]: the rows of reqs; history [R, W] holds each
    row's tokens (TokenHistory), lengths [R] how many are valid, params
    [R, 4] fp32 on the device: repetition, frequency, presence penalty, prompt
    length (TokenHistory.penalties). Neutral params (1, 0, 0)
    leave a row's logits exactly as they were.

    Sparse: only the logits of tokens in a history change, so the work is
    O(R * W), not O(R * V) (the vocabulary is 152k; a dense version made ~20
    passes over [S, V] fp32 a step). Each row's tokens are sorted so equal
    tokens sit in runs; a run's output count gives the frequency penalty, and
    every position of a run writes the same new value, so duplicate writes
    are harmless. Invalid positions point at the scratch column."""
    vocab = work.shape[1] - 1
    device = work.device
    rep, freq, pres = params[:, 0:1], params[:, 1:2], params[:, 2:3]
    prompt_len = params[:, 3:4].long()
    pos = torch.arange(history.shape[1], device=device)[None, :]
    valid = pos < lengths[:, None]
    tokens, order = torch.where(valid, history, vocab).sort(dim=1)
    is_output = (valid & (pos >= prompt_len)).gather(1, order)
    first = torch.ones_like(tokens, dtype=torch.bool)
    first[:, 1:] = tokens[:, 1:] != tokens[:, :-1]
    run = first.cumsum(dim=1) - 1
    counts = torch.zeros(tokens.shape, device=device).scatter_add_(1, run, is_output.float()).gather(1, run)
    row_index = rows[:, None].expand_as(tokens)
    old = work[row_index, tokens]
    new = torch.where(old > 0, old / rep, old * rep) - freq * counts - pres * (counts > 0).float()
    work[row_index, tokens] = torch.where(tokens < vocab, new, old)


def scratch_work(logits: torch.Tensor) -> torch.Tensor:
    """[S, V+1] fp32 copy of logits [S, V] whose last column is a zeroed
    scratch column (where apply_penalties and n-gram bans send padding)."""
    num_rows, vocab = logits.shape
    work = torch.empty(num_rows, vocab + 1, dtype=torch.float32, device=logits.device)
    work[:, :vocab] = logits
    work[:, vocab] = 0.0
    return work


def apply_top_k_top_p(logits: torch.Tensor, top_k: torch.Tensor, top_p: torch.Tensor) -> torch.Tensor:
    """Mask (to -inf) tokens outside each row's top-k, then outside its top-p
    nucleus of the renormalised top-k distribution. top_k 0 = off."""
    vocab = logits.shape[-1]
    sorted_logits, order = logits.sort(dim=-1, descending=True)
    k = torch.where(top_k > 0, top_k, vocab).clamp(max=vocab)
    rank = torch.arange(vocab, device=logits.device)[None, :]
    sorted_logits = sorted_logits.masked_fill(rank >= k[:, None], float("-inf"))
    probs = sorted_logits.softmax(dim=-1)
    # Drop a token when the mass strictly before it already reaches top_p (the first always stays).
    drop = (probs.cumsum(dim=-1) - probs) >= top_p[:, None]
    drop[:, 0] = False
    sorted_logits = sorted_logits.masked_fill(drop, float("-inf"))
    return torch.empty_like(logits).scatter_(-1, order, sorted_logits)


@dataclass
class HistoryRows:
    """The rows of one step that read token history (penalties, n-gram bans)."""
    index: torch.Tensor       # [R] their rows in the batch (device)
    reqs: list[Request]
    slot_list: np.ndarray     # their TokenHistory slots (int64)
    slots: torch.Tensor       # the same, on the device
    penalties: np.ndarray     # [R, 4] fp32 apply_penalties' params rows (TokenHistory.penalties)
    lengths: torch.Tensor     # [R] tokens in each history (device)
    ngram: torch.Tensor       # [R] no_repeat_ngram_size (device)
    width: int                # longest history


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0, max_model_len: int = 16384):
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)
        self.history = TokenHistory(device, max_model_len)
        self._neg_inf = torch.full((), float("-inf"), device=device)
        self.graphs = None  # SamplerGraphs (sampler_graph.py) when the runner turns them on

    def release(self, request_ids) -> None:
        """The engine let these requests go (finished, preempted, aborted)."""
        self.history.release(request_ids)

    def _history_rows(self, reqs: list[Request]) -> "HistoryRows | None":
        rows = [i for i, r in enumerate(reqs) if r.sampling.has_penalties or r.sampling.no_repeat_ngram_size]
        if not rows:
            return None
        sub = [reqs[i] for i in rows]
        slot_list = self.history.slots(sub)
        lengths = self.history.length[slot_list]  # slots() loaded each to its request's num_tokens
        ints = to_device(torch.from_numpy(np.stack([lengths, self.history.ngram[slot_list], rows, slot_list])),
                         self.device)
        return HistoryRows(ints[2], sub, slot_list, ints[3], self.history.penalties[slot_list], ints[0], ints[1],
                           int(lengths.max()))

    def processed_logits(self, logits: torch.Tensor, reqs: list[Request], ctx=None) -> torch.Tensor:
        """fp32 logits after penalties and n-gram bans. The fp32 copy has one
        scratch column (a view without it is returned): sparse updates send
        the padding entries of their index tensors there."""
        ctx = ctx or self._history_rows(reqs)
        if ctx is None:
            return logits.float()
        work = scratch_work(logits)
        if any(r.sampling.has_penalties for r in ctx.reqs):
            params = to_device(torch.from_numpy(ctx.penalties), self.device)
            apply_penalties(work, ctx.index, params, self.history.rows(ctx.slots, ctx.width), ctx.lengths)
        if any(r.sampling.no_repeat_ngram_size for r in ctx.reqs):
            self.ban_ngrams(work, ctx.index, ctx.slots, ctx.lengths, ctx.ngram, ctx.width)
        return work[:, :-1]

    def ban_ngrams(self, work: torch.Tensor, index: torch.Tensor, slots: torch.Tensor, lengths: torch.Tensor,
                   ngram: torch.Tensor, width: int) -> None:
        """-inf on `work` (with its scratch column) for tokens that would repeat an n-gram."""
        banned = self.history.banned_tokens(slots, lengths, ngram, width, work.shape[1] - 1)
        # the value as a device tensor: a Python float would become a CPU tensor that index_put_
        # copies to the device with a blocking copy, a host sync every step
        work.index_put_((index[:, None].expand_as(banned), banned), self._neg_inf)

    def probs(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        """Sampling distribution of non-greedy rows (temperature, top-k, top-p)."""
        params = to_device([[r.sampling.temperature or 1.0, r.sampling.top_k, r.sampling.top_p] for r in reqs],
                           logits.device, torch.float32)
        temp, top_k, top_p = params[:, 0], params[:, 1].long(), params[:, 2]
        return apply_top_k_top_p(logits / temp[:, None], top_k, top_p).softmax(dim=-1)

    def __call__(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        if all(map(_is_plain_greedy, reqs)):
            # Fast path: no fp32 copy of [S, vocab] (the cast is exact, so the argmax is the same).
            return logits.argmax(dim=-1)
        if self.graphs is not None and self.graphs.can_run(reqs):
            tokens = self.graphs.run(logits, reqs)
            if tokens is not None:
                return tokens
        ctx = self._history_rows(reqs)
        tokens = self._sample(self.processed_logits(logits, reqs, ctx), reqs)
        if ctx is not None:
            self.history.record(ctx.slots, tokens.index_select(0, ctx.index), ctx.lengths, ctx.ngram, ctx.slot_list,
                                ctx.width)
        return tokens

    def _sample(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        greedy = logits.argmax(dim=-1)
        if all(map(_is_greedy, reqs)):
            return greedy
        probs = self.probs(logits, reqs)
        q = torch.empty_like(probs).exponential_(generator=self.generator)
        for row, req in enumerate(reqs):
            if req.sampling.seed is not None:
                if req.generator is None:
                    req.generator = torch.Generator(device=self.device).manual_seed(req.sampling.seed)
                q[row].exponential_(generator=req.generator)
        sampled = (probs / q).argmax(dim=-1)
        is_greedy = to_device(list(map(_is_greedy, reqs)), logits.device, torch.bool)
        return torch.where(is_greedy, greedy, sampled)
