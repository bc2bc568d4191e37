"""The batched sampler against a plain per-request reference written from
the SamplingParams semantics (one parameter at a time, then mixed)."""
import itertools
import math

import pytest
import torch

from inference.engine.request import Request
from inference.processor import ProcessedPrompt
from inference.sampling import SamplingParams
from inference.worker.sampler import Sampler

VOCAB = 50
_IDS = itertools.count()  # request ids are unique within a batch, as in the engine


def _req(prompt, outputs=(), **params):
    params.setdefault("max_tokens", 200)
    req = Request(f"r{next(_IDS)}", ProcessedPrompt(list(prompt), torch.zeros(3, len(prompt), dtype=torch.long), 0),
                  SamplingParams(**params))
    for tok in outputs:
        req.append_token(tok)
    return req


def ref_processed(row, prompt, outputs, p: SamplingParams):
    row = row.clone().double()
    for t in set(prompt) | set(outputs):
        if p.repetition_penalty != 1.0:
            row[t] = row[t] / p.repetition_penalty if row[t] > 0 else row[t] * p.repetition_penalty
    for t in set(outputs):
        row[t] -= p.frequency_penalty * outputs.count(t) + p.presence_penalty
    seq, n = list(prompt) + list(outputs), p.no_repeat_ngram_size
    if n and len(seq) + 1 >= n:
        prefix = seq[len(seq) - n + 1:]
        for i in range(len(seq) - n + 1):
            if seq[i:i + n - 1] == prefix:
                row[seq[i + n - 1]] = -math.inf
    return row


def ref_probs(row, p: SamplingParams):
    row = row / (p.temperature or 1.0)
    order = sorted(range(len(row)), key=lambda t: -float(row[t]))
    keep = order[: p.top_k] if p.top_k > 0 else order
    probs = torch.softmax(torch.tensor([float(row[t]) for t in keep], dtype=torch.float64), 0)
    kept, mass = [], 0.0
    for t, q in zip(keep, probs.tolist()):
        if mass >= p.top_p and kept:
            break
        kept.append(t)
        mass += q
    out = torch.zeros(len(row), dtype=torch.float64)
    sub = torch.softmax(torch.tensor([float(row[t]) for t in kept], dtype=torch.float64), 0)
    out[kept] = sub
    return out


CASES = [
    dict(repetition_penalty=1.3),
    dict(presence_penalty=0.7),
    dict(frequency_penalty=0.4),
    dict(no_repeat_ngram_size=2),
    dict(no_repeat_ngram_size=3, repetition_penalty=0.8, frequency_penalty=0.2, presence_penalty=-0.1),
]


def test_penalties_and_ngram_match_reference_in_one_batch():
    torch.manual_seed(0)
    prompt, outputs = [1, 2, 3, 4, 2, 3], [7, 2, 3, 7, 9, 2]
    reqs = [_req(prompt, outputs, **case) for case in CASES] + [_req(prompt, outputs)]
    logits = torch.randn(len(reqs), VOCAB) * 3
    got = Sampler(torch.device("cpu")).processed_logits(logits, reqs)
    for row, (req, case) in enumerate(zip(reqs, CASES + [{}])):
        want = ref_processed(logits[row], prompt, outputs, req.sampling).float()
        assert torch.equal(torch.isinf(got[row]), torch.isinf(want)), case
        finite = ~torch.isinf(want)
        torch.testing.assert_close(got[row][finite], want[finite], atol=1e-5, rtol=0)
    assert torch.isinf(got[3]).sum() == 1 and torch.isinf(got[3, 3])  # "2 3" seen before -> after "2", ban 3


def test_long_ngram_mineru_size():
    pattern = list(range(10, 40)) * 5  # period 30, so every 100-gram repeats
    req = _req(pattern[:40], pattern[40:], no_repeat_ngram_size=100)
    got = Sampler(torch.device("cpu")).processed_logits(torch.zeros(1, VOCAB), [req])[0]
    want = ref_processed(torch.zeros(VOCAB), pattern[:40], pattern[40:], req.sampling)
    assert torch.equal(torch.isinf(got), torch.isinf(want)) and int(torch.isinf(got).sum()) == 1


@pytest.mark.parametrize("case", [dict(temperature=0.7), dict(temperature=1.0, top_k=5), dict(temperature=1.3, top_p=0.6),
                                  dict(temperature=0.9, top_k=8, top_p=0.8)])
def test_probs_match_reference(case):
    torch.manual_seed(1)
    reqs = [_req([1], **case), _req([1], temperature=1.0)]
    logits = torch.randn(2, VOCAB) * 2
    got = Sampler(torch.device("cpu")).probs(logits, reqs)[0]
    torch.testing.assert_close(got.double(), ref_probs(logits[0].double(), reqs[0].sampling), atol=1e-6, rtol=0)


def test_greedy_is_argmax_and_mixed_batch_keeps_support():
    torch.manual_seed(2)
    logits = torch.randn(3, VOCAB)
    reqs = [_req([1], temperature=0.0), _req([1], temperature=1.0, top_k=3), _req([1], temperature=1.0, top_k=1)]
    sampler = Sampler(torch.device("cpu"))
    for _ in range(20):
        tokens = sampler(logits, reqs)
        assert tokens[0] == logits[0].argmax() and tokens[2] == logits[2].argmax()
        assert int(tokens[1]) in logits[1].topk(3).indices.tolist()


def test_seeded_draws_do_not_depend_on_batch():
    logits = torch.randn(3, VOCAB)
    def draws(batch_rows):
        reqs = [_req([1], temperature=1.0, seed=7 if row == 0 else None) for row in batch_rows]
        sampler = Sampler(torch.device("cpu"), seed=len(batch_rows))
        return [int(sampler(logits[batch_rows], reqs)[0]) for _ in range(10)]
    assert draws([0]) == draws([0, 1, 2])


def test_draw_frequencies_follow_probs():
    logits = torch.tensor([[2.0, 1.0, 0.5, -1.0] + [-9.0] * (VOCAB - 4)])
    req = _req([1], temperature=1.0, top_k=3)
    sampler = Sampler(torch.device("cpu"))
    counts = torch.bincount(torch.stack([sampler(logits, [req])[0] for _ in range(3000)]), minlength=VOCAB)
    want = ref_probs(logits[0].double(), req.sampling)
    assert counts[3:].sum() == 0
    assert torch.allclose(counts[:3].double() / 3000, want[:3], atol=0.03)


def test_incremental_history_matches_reference_over_many_steps():
    """The device history is updated by each sampled token (not reloaded):
    after every step the processed logits equal the from-scratch reference,
    while requests finish, release their slots and new ones take them."""
    torch.manual_seed(1)
    vocab = 6  # tiny vocabulary: n-grams repeat within a few steps
    sampler = Sampler(torch.device("cpu"))
    params = [dict(no_repeat_ngram_size=2, temperature=0), dict(no_repeat_ngram_size=3, presence_penalty=0.5, temperature=0),
              dict(frequency_penalty=0.3, repetition_penalty=1.2, temperature=0.8, seed=3), dict(no_repeat_ngram_size=1, temperature=0)]
    live = [_req([1, 2, 3, 1, 2], **p) for p in params]
    for i, req in enumerate(live):
        req.request_id = f"r{i}"
    checked_bans, next_id = 0, len(live)
    for step in range(30):
        logits = torch.randn(len(live), vocab)
        want = [ref_processed(logits[i], list(r.token_ids[:r.num_prompt_tokens]), list(r.token_ids[r.num_prompt_tokens:]),
                              r.sampling).float() for i, r in enumerate(live)]
        got = sampler.processed_logits(logits, live)
        for i, w in enumerate(want):
            assert torch.equal(torch.isinf(got[i]), torch.isinf(w)), (step, i)
            finite = ~torch.isinf(w)
            torch.testing.assert_close(got[i][finite], w[finite], atol=1e-5, rtol=0)
            checked_bans += int(torch.isinf(w).sum())
        if all(torch.isinf(g).all() for g in got):
            break
        tokens = sampler(logits, live).tolist()
        for req, tok in zip(live, tokens):
            req.append_token(tok)
        if step % 7 == 6:  # the oldest request finishes; a new one takes its slot
            done = live.pop(0)
            sampler.release([done.request_id])
            fresh = _req([4, 4, 5], **params[next_id % len(params)])
            fresh.request_id = f"r{next_id}"
            next_id += 1
            live.append(fresh)
    assert checked_bans > 10  # the bans were exercised, not only the penalties


def test_history_reloads_after_recompute():
    """A request whose host history no longer matches its slot (preempted and
    recomputed, or KV from a prefill worker) is reloaded, not trusted."""
    sampler = Sampler(torch.device("cpu"))
    req = _req([1, 2, 1], no_repeat_ngram_size=2, temperature=0)
    req.request_id = "a"
    tok = int(sampler(torch.zeros(1, VOCAB), [req])[0])  # loads the slot and records one token
    req.append_token(tok)
    req.append_token(1)  # a token the sampler never saw (e.g. decoded elsewhere): lengths now differ
    got = sampler.processed_logits(torch.zeros(1, VOCAB), [req])[0]
    want = ref_processed(torch.zeros(VOCAB), [1, 2, 1], [tok, 1], req.sampling)
    assert torch.equal(torch.isinf(got), torch.isinf(want)) and bool(torch.isinf(got[2]))


def test_new_request_object_under_known_id_brings_its_own_params():
    """The decode role swaps a reserved request for the one its KV describes (same id, new
    object, other parameters): the slot's cached penalties and n-gram size follow the new one."""
    sampler = Sampler(torch.device("cpu"))
    old = _req([1, 2, 3, 1, 2], presence_penalty=2.0, temperature=0)
    sampler.processed_logits(torch.zeros(1, VOCAB), [old])
    new = _req([1, 2, 3, 1, 2], no_repeat_ngram_size=2, repetition_penalty=1.5, temperature=0)
    new.request_id = old.request_id
    logits = torch.randn(1, VOCAB)
    got = sampler.processed_logits(logits, [new])[0]
    want = ref_processed(logits[0], [1, 2, 3, 1, 2], [], new.sampling).float()
    assert torch.equal(torch.isinf(got), torch.isinf(want)) and bool(torch.isinf(got[3]))
    finite = ~torch.isinf(want)
    torch.testing.assert_close(got[finite], want[finite], atol=1e-5, rtol=0)
