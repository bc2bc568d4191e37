"""SamplerGraphs reads its requests' flags once per batch composition: a batch with the same
requests in the same order reuses them, any other batch (a request swapped, reordered, or the
caller's list changed in place) is read again."""
import torch

from inference.engine.request import Request
from inference.processor import ProcessedPrompt
from inference.sampling import SamplingParams
from inference.worker.sampler import Sampler
from inference.worker.sampler_graph import SamplerGraphs


def _req(rid: str, temperature: float = 0.0, **params) -> Request:
    return Request(rid, ProcessedPrompt([1, 2, 3], torch.zeros(3, 3, dtype=torch.long), 0),
                   SamplingParams(temperature=temperature, max_tokens=8, **params))


def test_rows_follow_the_composition():
    graphs = SamplerGraphs(Sampler(torch.device("cpu")), max_rows=16, capture=False)
    penalised, plain = _req("a", presence_penalty=1.0), _req("b")
    reqs = [plain, penalised]
    assert graphs.can_run(reqs)
    first = graphs._rows(reqs)
    assert first.rows.tolist() == [1] and first.history_reqs == [penalised]
    assert graphs._rows(list(reqs)) is first  # same requests, same order: nothing read again
    reqs[1] = _req("c")  # changed in place: compared with the copy kept, not the caller's list
    assert not graphs.can_run(reqs)  # plain greedy only: the sampler's argmax fast path
    assert graphs._rows([penalised, plain]).rows.tolist() == [0]  # reordered
    assert not graphs.can_run([penalised, _req("d", temperature=1.0, no_repeat_ngram_size=2)])
    assert graphs.can_run([penalised, plain])


def test_new_request_object_under_known_id_in_the_static_step():
    """A new Request under an id the history already holds (the decode role's reservation swap)
    brings its own penalties, n-gram size and history into the packed upload, even while the
    batch keeps its order: the static step's tokens equal a fresh eager sampler's."""
    graphed = Sampler(torch.device("cpu"))
    graphed.graphs = SamplerGraphs(graphed, max_rows=16, capture=False)
    other = _req("b", presence_penalty=0.5)
    old = _req("a", presence_penalty=2.0)
    gen = torch.Generator().manual_seed(0)
    first = graphed(torch.randn(2, 11, generator=gen), [old, other])
    old.append_token(int(first[0]))
    other.append_token(int(first[1]))
    new = Request("a", ProcessedPrompt([4, 5, 4], torch.zeros(3, 3, dtype=torch.long), 0),
                  SamplingParams(temperature=0.0, max_tokens=8, no_repeat_ngram_size=2, repetition_penalty=3.0))
    fresh_other = _req("b", presence_penalty=0.5)
    fresh_other.append_token(int(first[1]))
    eager = Sampler(torch.device("cpu"))
    for _ in range(3):
        logits = torch.randn(2, 11, generator=gen)
        logits[0, 5] = 50.0  # "4 5" was seen: the n-gram ban must reach the new object's row
        want = eager(logits, [new, fresh_other])
        assert graphed.graphs.can_run([new, other])
        got = graphed(logits, [new, other])
        assert torch.equal(got, want)
        for req, tok in zip([new, other, fresh_other], [*want.tolist(), want[1].item()]):
            req.append_token(tok)
