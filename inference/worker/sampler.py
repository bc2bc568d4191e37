"""Batched sampler: logits [S, V] of the requests that sample this step ->
token ids [S]. Semantics in inference.sampling.

Pure greedy batches without penalties (the document workload) are one
argmax on the device. Otherwise vectorised over the batch; the only per-request work is building the
penalty/n-gram inputs from each request's numpy token history, and only for
requests that use them. Draws use the exponential race (argmax p / q with
q ~ Exp(1)), so a seeded request draws its q from its own generator and its
tokens do not depend on the rest of the batch.
"""
from __future__ import annotations

import numpy as np
import torch

from inference.engine.request import Request


def apply_penalties(logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
    num_seqs, vocab = logits.shape
    device = logits.device
    rep = torch.tensor([r.sampling.repetition_penalty for r in reqs], device=device)[:, None]
    freq = torch.tensor([r.sampling.frequency_penalty for r in reqs], device=device)[:, None]
    pres = torch.tensor([r.sampling.presence_penalty for r in reqs], device=device)[:, None]
    out_counts = torch.zeros(num_seqs, vocab + 1, device=device)
    seen = torch.zeros(num_seqs, vocab + 1, dtype=torch.bool, device=device)
    outs = [torch.from_numpy(r.token_ids[r.num_prompt_tokens:]) for r in reqs]
    prompts = [torch.from_numpy(r.token_ids[: r.num_prompt_tokens]) for r in reqs]
    # Pad with the extra column `vocab`, dropped below.
    pad_out = torch.nn.utils.rnn.pad_sequence(outs, batch_first=True, padding_value=vocab).to(device)
    pad_prompt = torch.nn.utils.rnn.pad_sequence(prompts, batch_first=True, padding_value=vocab).to(device)
    out_counts.scatter_add_(1, pad_out, torch.ones_like(pad_out, dtype=out_counts.dtype))
    seen.scatter_(1, pad_prompt, True)
    out_counts, seen = out_counts[:, :vocab], seen[:, :vocab] | (out_counts[:, :vocab] > 0)
    logits = torch.where(seen, torch.where(logits > 0, logits / rep, logits * rep), logits)
    return logits - freq * out_counts - pres * (out_counts > 0).to(logits.dtype)


def banned_ngram_tokens(tokens: np.ndarray, n: int) -> np.ndarray:
    """Tokens t such that (last n-1 tokens, t) already occurs in `tokens`."""
    length = len(tokens)
    if n < 1 or length + 1 < n:
        return np.empty(0, dtype=np.int64)
    if n == 1:
        return np.unique(tokens)
    prefix = tokens[length - n + 1:]
    # n-grams starting at i in [0, length - n]; cheap filter on the prefix's last token first.
    cand = np.nonzero(tokens[n - 2 : length - 1] == prefix[-1])[0]
    cand = cand[cand <= length - n]
    hits = [i for i in cand.tolist() if np.array_equal(tokens[i : i + n - 1], prefix)]
    return np.unique(tokens[np.asarray(hits, dtype=np.int64) + n - 1]) if hits else np.empty(0, dtype=np.int64)


def apply_no_repeat_ngram(logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
    rows, cols = [], []
    for row, req in enumerate(reqs):
        if req.sampling.no_repeat_ngram_size:
            banned = banned_ngram_tokens(req.token_ids, req.sampling.no_repeat_ngram_size)
            rows += [row] * len(banned)
            cols += banned.tolist()
    if rows:
        logits = logits.index_put((torch.tensor(rows, device=logits.device), torch.tensor(cols, device=logits.device)),
                                  torch.tensor(float("-inf"), device=logits.device))
    return logits


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


class Sampler:
    def __init__(self, device: torch.device, seed: int = 0):
        self.device = device
        self.generator = torch.Generator(device=device).manual_seed(seed)

    def processed_logits(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        """fp32 logits after penalties and n-gram bans."""
        logits = logits.float()
        if any(r.sampling.has_penalties for r in reqs):
            logits = apply_penalties(logits, reqs)
        if any(r.sampling.no_repeat_ngram_size for r in reqs):
            logits = apply_no_repeat_ngram(logits, reqs)
        return logits

    def probs(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        """Sampling distribution of non-greedy rows (temperature, top-k, top-p)."""
        temp = torch.tensor([r.sampling.temperature or 1.0 for r in reqs], device=logits.device)
        top_k = torch.tensor([r.sampling.top_k for r in reqs], device=logits.device)
        top_p = torch.tensor([r.sampling.top_p for r in reqs], device=logits.device)
        return apply_top_k_top_p(logits / temp[:, None], top_k, top_p).softmax(dim=-1)

    def __call__(self, logits: torch.Tensor, reqs: list[Request]) -> torch.Tensor:
        if all(r.is_plain_greedy for r in reqs):
            # Fast path: no fp32 copy of [S, vocab] (the cast is exact, so the argmax is the same).
            return logits.argmax(dim=-1)
        logits = self.processed_logits(logits, reqs)
        greedy = logits.argmax(dim=-1)
        if all(r.sampling.is_greedy for r in reqs):
            return greedy
        probs = self.probs(logits, reqs)
        q = torch.empty_like(probs).exponential_(generator=self.generator)
        for row, req in enumerate(reqs):
            if req.sampling.seed is not None:
                if req.generator is None:
                    req.generator = torch.Generator(device=self.device).manual_seed(req.sampling.seed)
                q[row].exponential_(generator=req.generator)
        sampled = (probs / q).argmax(dim=-1)
        is_greedy = torch.tensor([r.sampling.is_greedy for r in reqs], device=logits.device)
        return torch.where(is_greedy, greedy, sampled)
