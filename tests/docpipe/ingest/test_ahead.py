"""ahead(): order kept, made on another thread, bounded, errors raised in the
consumer, an early stop releases the thread."""
import threading

import pytest

from docpipe.ingest.ahead import ahead


def test_items_in_order_made_on_another_thread_and_bounded():
    made_on, made = [], []

    def items():
        for i in range(20):
            made_on.append(threading.current_thread().name)
            made.append(i)
            yield i

    out = []
    for x in ahead(items(), window=3, name="t-ahead"):
        assert len(made) - len(out) <= 3 + 2  # window waiting, one in hand, one being put
        out.append(x)
    assert out == list(range(20)) and set(made_on) == {"t-ahead"}


def test_error_is_raised_in_the_consumer_after_the_good_items():
    def items():
        yield 1
        yield 2
        raise ValueError("page 3 cannot be made")

    got = []
    with pytest.raises(ValueError, match="page 3"):
        for x in ahead(items(), window=2):
            got.append(x)
    assert got == [1, 2]


def test_early_stop_releases_the_thread():
    def items():
        i = 0
        while True:
            yield i
            i += 1

    before = threading.active_count()
    gen = ahead(items(), window=2)
    assert [next(gen) for _ in range(5)] == [0, 1, 2, 3, 4]
    gen.close()  # the consumer stops: the producer must exit
    assert threading.active_count() == before


def test_hold_instead_of_waiting():
    release = threading.Event()

    def items():
        yield "first"
        release.wait(5)
        yield "second"

    HOLD = object()
    gen = ahead(items(), window=2, hold=HOLD)
    got = []
    for x in gen:
        if x is HOLD:
            if got == ["first"] and not release.is_set():
                got.append("held")
                release.set()  # now the producer makes the second item
            continue
        got.append(x)
    assert got[0] == "first" and got[-1] == "second"
    assert "held" in got  # the consumer was told to come back instead of blocking
