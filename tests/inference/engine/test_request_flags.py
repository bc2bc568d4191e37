"""Request's sampling flags, set once at admission and read by the sampler every step:
is_greedy (argmax of the processed logits) and is_plain_greedy (argmax of the raw logits:
greedy with no penalty and no n-gram ban)."""
import pytest
import torch

from inference.engine.request import Request
from inference.processor import ProcessedPrompt
from inference.sampling import SamplingParams


@pytest.mark.parametrize("params, greedy, plain", [
    (dict(temperature=0), True, True),
    (dict(temperature=0.7), False, False),
    (dict(temperature=0.7, top_k=1), True, True),
    (dict(top_k=-1), False, False),
    (dict(temperature=0, presence_penalty=1.0), True, False),
    (dict(temperature=0, frequency_penalty=0.05), True, False),
    (dict(temperature=0, repetition_penalty=1.1), True, False),
    (dict(temperature=0, no_repeat_ngram_size=100), True, False),
    (dict(temperature=1.0, no_repeat_ngram_size=3), False, False),
])
def test_flags_follow_sampling_params(params, greedy, plain):
    sampling = SamplingParams(**params)
    req = Request("r", ProcessedPrompt([1, 2], torch.zeros(3, 2, dtype=torch.long), 0), sampling)
    assert (req.is_greedy, req.is_plain_greedy) == (greedy, plain)
    assert req.is_greedy == sampling.is_greedy
