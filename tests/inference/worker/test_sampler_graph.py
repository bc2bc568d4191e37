"""The fixed-shape sampler step (sampler_graph.py) against the eager sampler:
over many steps of greedy requests with penalties and n-gram bans (mixed
with plain greedy rows, requests finishing and new ones taking their slots,
batch sizes that need padding), the tokens are identical and so is every
later step's processed logits (the device histories stayed in step).
On the CPU the static path runs eagerly; on a GPU it is captured."""
from __future__ import annotations

import pytest
import torch

from inference.engine.request import Request
from inference.processor import ProcessedPrompt
from inference.sampling import SamplingParams
from inference.worker.sampler import Sampler
from inference.worker.sampler_graph import SamplerGraphs

PARAMS = [dict(no_repeat_ngram_size=3, presence_penalty=1.0, frequency_penalty=0.05),
          dict(no_repeat_ngram_size=2),
          dict(presence_penalty=0.5, repetition_penalty=1.3),
          dict(),  # plain greedy: the graph step runs it on the scratch slot
          dict(no_repeat_ngram_size=1, frequency_penalty=0.2)]


def _req(rid: str, prompt: list[int], params: dict) -> Request:
    req = Request(rid, ProcessedPrompt(prompt, torch.zeros(3, len(prompt), dtype=torch.long), 0),
                  SamplingParams(temperature=0.0, max_tokens=500, **params))
    return req


def _pair(device: torch.device, capture: bool, vocab: int, steps: int, seed: int, long_prompt_id: int = -1):
    """long_prompt_id: that request's prompt is longer than the history's first width (256), so the
    history is reallocated mid-run (a new generation: graphs of the old one are dropped)."""
    gen = torch.Generator().manual_seed(seed)
    eager, graphed = Sampler(device), Sampler(device)
    graphed.graphs = SamplerGraphs(graphed, max_rows=16, capture=capture)
    loads = []  # histories loaded from the host: once per request, never again while it runs
    load = graphed.history._load
    graphed.history._load = lambda todo: (loads.extend(req.request_id for _, req in todo), load(todo))[1]
    live: dict[str, tuple[Request, Request]] = {}
    next_id = 0
    used_graph = 0
    for step in range(steps):
        while len(live) < 3 + step % 9:  # batch sizes 3..11: padded to buckets 4, 8, 16
            length = 300 if next_id == long_prompt_id else 3 + next_id % 5
            prompt = torch.randint(0, vocab, (length,), generator=gen).tolist()
            p = PARAMS[next_id % len(PARAMS)]
            live[str(next_id)] = (_req(str(next_id), prompt, p), _req(str(next_id), prompt, p))
            next_id += 1
        a_reqs = [a for a, _ in live.values()]
        b_reqs = [b for _, b in live.values()]
        logits = torch.randn(len(live), vocab, generator=gen).to(device)
        want = eager(logits, a_reqs)
        assert graphed.graphs.can_run(b_reqs)
        got = graphed(logits, b_reqs)
        used_graph += 1
        assert torch.equal(got.cpu(), want.cpu()), step
        for (a, b), tok in zip(live.values(), want.tolist()):
            a.append_token(tok)
            b.append_token(tok)
        if step % 4 == 3:  # the oldest finishes; its slot goes back
            rid = next(iter(live))
            del live[rid]
            eager.release([rid])
            graphed.release([rid])
    with_history = sum(1 for i in range(next_id) if PARAMS[i % len(PARAMS)])  # plain greedy rows have none
    assert len(loads) == len(set(loads)) == with_history
    return used_graph, graphed


def test_static_step_matches_the_eager_sampler_on_the_cpu():
    used, graphed = _pair(torch.device("cpu"), capture=False, vocab=7, steps=60, seed=0, long_prompt_id=20)
    assert used == 60 and graphed.graphs.enabled and graphed.history.width > 256


def test_random_sampling_stays_eager():
    sampler = Sampler(torch.device("cpu"))
    sampler.graphs = SamplerGraphs(sampler, max_rows=16, capture=False)
    reqs = [_req("a", [1, 2], dict(no_repeat_ngram_size=2)),
            Request("b", ProcessedPrompt([1], torch.zeros(3, 1, dtype=torch.long), 0),
                    SamplingParams(temperature=1.0, presence_penalty=0.5))]
    assert not sampler.graphs.can_run(reqs)
    assert not sampler.graphs.can_run([_req("c", [1], {})])  # plain greedy only: the argmax fast path


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph capture needs a CUDA device")
def test_captured_step_matches_the_eager_sampler_on_the_gpu():
    used, graphed = _pair(torch.device("cuda"), capture=True, vocab=300, steps=80, seed=1)
    assert graphed.graphs.enabled, "capture failed (see the warning): the sampler fell back to eager"
    assert used == 80 and len(graphed.graphs.graphs) >= 2


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="graph capture needs a CUDA device")
def test_captures_go_on_after_the_history_is_reallocated():
    # the old generation's graphs are dropped with their memory pool; a capture into that pool's
    # handle failed (allocator assert, seen on the H200) and turned the captured sampler off
    used, graphed = _pair(torch.device("cuda"), capture=True, vocab=300, steps=60, seed=2, long_prompt_id=20)
    assert graphed.history.width > 256 and graphed.history.generation >= 2
    assert graphed.graphs.enabled, "capture failed after the reallocation: the sampler fell back to eager"
    assert used == 60


@pytest.fixture
def captured(monkeypatch):
    """capture_into replaced (capture is off on the CPU): records each key and keeps a 'graph' whose
    replay runs the step eagerly; returns the keys in capture order."""
    from inference.worker import sampler_graph

    keys = []

    def fake_capture_into(owner, key, fn, device, what, log):
        fn()  # the warm-up call, on the scratch slot
        keys.append(key)
        owner.graphs[key] = type("EagerGraph", (), {"replay": staticmethod(fn)})()
        return True

    monkeypatch.setattr(sampler_graph, "capture_into", fake_capture_into)
    return keys


def _capturing_sampler(max_rows: int) -> Sampler:
    sampler = Sampler(torch.device("cpu"))
    sampler.graphs = SamplerGraphs(sampler, max_rows=max_rows, logits=(300, torch.float32))
    sampler.graphs.capture = True  # off on the CPU: captures stand in through the `captured` fixture
    return sampler


def test_capture_all_takes_every_rows_bucket_at_the_reserved_width(captured):
    """Engine start: the history reserved, then one step graph per rows bucket, largest first; a run that
    stays within the reservation replays them and captures nothing more."""
    sampler = _capturing_sampler(16)
    graphs = sampler.graphs
    sampler.history.reserve(17, 512)
    generation = sampler.history.generation
    assert graphs.capture_all() == 5
    assert [k[0] for k in captured] == [16, 8, 4, 2, 1]
    assert {k[1:] for k in captured} == {(511, 300, torch.float32, generation)}
    eager = Sampler(torch.device("cpu"))
    gen = torch.Generator().manual_seed(4)
    for n in (3, 11, 16):
        prompts = [torch.randint(0, 300, (5 + i,), generator=gen).tolist() for i in range(n)]
        a = [_req(f"{n}-{i}", p, PARAMS[i % 3]) for i, p in enumerate(prompts)]
        b = [_req(f"{n}-{i}", p, PARAMS[i % 3]) for i, p in enumerate(prompts)]
        logits = torch.randn(n, 300, generator=gen)
        assert torch.equal(sampler(logits, b), eager(logits, a))
        for s in (sampler, eager):  # finished: slots back (16 running at most, as the engine's cap)
            s.release([r.request_id for r in a])
    assert len(captured) == 5 and sampler.history.generation == generation  # nothing captured or resized


def test_capture_all_needs_the_logits_shape():
    sampler = Sampler(torch.device("cpu"))
    graphs = SamplerGraphs(sampler, max_rows=4)
    graphs.capture = True
    assert graphs.capture_all() == 0 and not graphs.graphs


def test_a_widened_history_captures_every_bucket_again_at_once(captured):
    sampler = _capturing_sampler(4)
    graphs = sampler.graphs
    sampler.history.reserve(5, 64)
    assert graphs.capture_all() == 3 and len(captured) == 3
    eager = Sampler(torch.device("cpu"))
    gen = torch.Generator().manual_seed(6)
    prompt = torch.randint(0, 300, (100,), generator=gen).tolist()  # longer than the reserved width
    a, b = _req("long", prompt, PARAMS[0]), _req("long", prompt, PARAMS[0])
    logits = torch.randn(1, 300, generator=gen)
    assert torch.equal(sampler(logits, [b]), eager(logits, [a]))
    assert sampler.history.width > 64
    new = captured[3:]
    assert sorted(k[0] for k in new) == [1, 2, 4] and {k[4] for k in new} == {sampler.history.generation}
