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
