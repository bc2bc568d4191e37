"""SamplingParams refuses what it cannot sample with: out-of-range and non-finite numbers."""
import math

import pytest

from inference.sampling import SamplingParams


@pytest.mark.parametrize("name", ["temperature", "top_p", "repetition_penalty", "presence_penalty", "frequency_penalty"])
@pytest.mark.parametrize("bad", [math.nan, math.inf, -math.inf, "0.5", None])
def test_non_finite_or_non_numbers_are_refused_with_the_field_named(name, bad):
    with pytest.raises(ValueError, match=f"{name} must be a finite number"):
        SamplingParams(**{name: bad})


@pytest.mark.parametrize("kw, msg", [({"temperature": -0.1}, "temperature must be >= 0"), ({"top_p": 0.0}, "top_p"),
                                     ({"repetition_penalty": 0.0}, "repetition_penalty"), ({"max_tokens": 0}, "max_tokens")])
def test_out_of_range_values_are_refused(kw, msg):
    with pytest.raises(ValueError, match=msg):
        SamplingParams(**kw)


def test_ints_and_the_defaults_pass():
    p = SamplingParams(temperature=1, top_p=1, presence_penalty=-2, frequency_penalty=0.5, top_k=-1)
    assert p.top_k == 0 and not p.is_greedy
