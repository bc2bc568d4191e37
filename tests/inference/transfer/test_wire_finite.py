"""wire.all_finite, the one check for non-finite floats in a header before it is encoded, against
a reference: json.dumps(allow_nan=False), which refuses exactly the headers holding NaN or +-inf
anywhere (nested dicts, lists, tuples) and accepts ints of any size, bools, strings and None."""
import json
import math
import random

import pytest

from inference.transfer import wire

_BAD = (math.nan, math.inf, -math.inf)
_SCALARS = (0, -7, 10 ** 30, -(10 ** 400), True, False, None, "", "nan", "inf", "x\u00e9", 0.0, -0.0, 1.5e308, 5e-324)


def _reference(obj) -> bool:
    try:
        json.dumps(obj, allow_nan=False)
    except ValueError:
        return False
    return True


def _tree(rng: random.Random, depth: int, p_bad: float):
    """A random header-like value: scalars, lists, tuples and dicts (string keys) nested up to depth."""
    kind = rng.random()
    if depth == 0 or kind < 0.4:
        return rng.choice(_BAD) if rng.random() < p_bad else rng.choice(_SCALARS)
    items = [_tree(rng, depth - 1, p_bad) for _ in range(rng.randrange(4))]
    if kind < 0.6:
        return items
    if kind < 0.7:
        return tuple(items)
    return {f"k{i}": v for i, v in enumerate(items)}


@pytest.mark.parametrize("bad", _BAD)
@pytest.mark.parametrize("wrap", [lambda v: v, lambda v: [v], lambda v: {"a": {"b": [1, (None, "s", v)]}},
                                  lambda v: {"items": [{"seq": 1, "x": 2.5}, {"hops": {"sent": v}}]}])
def test_a_non_finite_float_anywhere_is_found(bad, wrap):
    obj = wrap(bad)
    assert not wire.all_finite(obj) and not _reference(obj)


def test_a_non_finite_float_subclass_or_one_in_a_dict_subclass_is_found():
    """Subclasses no other case here holds (numpy's float64, OrderedDict): a non-finite float found anywhere."""
    import collections

    import numpy as np

    nan64 = np.float64("nan")
    for where in (nan64, [nan64], (1, [2, {"x": nan64}]), {"a": {"b": [None, "s", (nan64,)]}},
                  {"items": [{"seq": 1, "meta": {"t": 1.5e9, "ids": [[0, 4]]}}, {"x": nan64}]},
                  *(collections.OrderedDict(k=[bad]) for bad in (*_BAD, nan64))):
        assert not wire.all_finite(where), where


def test_ints_bools_strings_and_none_are_finite():
    obj = {"i": [0, -1, 10 ** 400], "b": (True, False), "s": ["nan", "inf", "-Infinity"], "n": None, "f": [0.0, 1e308]}
    assert wire.all_finite(obj) and _reference(obj)


def test_all_finite_matches_the_json_reference_on_random_trees():
    rng = random.Random(7)
    seen = {True: 0, False: 0}
    for _ in range(2000):
        obj = _tree(rng, rng.randrange(5), rng.choice((0.0, 0.02, 0.2)))
        want = _reference(obj)
        assert wire.all_finite(obj) is want, obj
        seen[want] += 1
    assert min(seen.values()) > 100  # both answers exercised
