"""ahead()'s hold side: a `Hold` is bound to the iterator's readiness (its
`ready` Event is set when the next item is there), a producer that ends
without handing anything over is reported instead of waited on, and
`HoldWait` (the consumer's waits) backs off without spinning and times out
per spell of holds with a message naming what it waited for."""
import queue
import threading
import types

import pytest

import docpipe.ingest.ahead as ahead_mod
from docpipe.ingest.ahead import Hold, HoldTimeout, HoldWait, ahead


def test_bound_hold_is_set_when_the_next_item_is_made():
    go = threading.Event()

    def items():
        go.wait(5)
        yield "page"

    gen = ahead(items(), window=2, name="t-pages", hold=Hold())
    held = next(gen)
    assert isinstance(held, Hold) and "t-pages" in held.what
    assert not held.ready.is_set()  # nothing made yet: a consumer waiting on it would sleep
    go.set()
    assert held.ready.wait(5)  # the producer's put wakes the waiter
    got = [x for x in gen if not isinstance(x, Hold)]
    assert got == ["page"]


def _faulty_queue_module(monkeypatch):
    """ahead's queue module with a Queue that refuses the end marker and the
    error (as a bug in handing over would): the producer thread just ends."""
    class Faulty(queue.Queue):
        def put(self, item, *a, **kw):
            if item is ahead_mod._END or isinstance(item, ahead_mod._Raised):
                raise SystemExit("hand-over lost")  # ends the thread silently
            return super().put(item, *a, **kw)

    monkeypatch.setattr(ahead_mod, "queue", types.SimpleNamespace(Queue=Faulty, Empty=queue.Empty, Full=queue.Full))


@pytest.mark.filterwarnings("ignore::pytest.PytestUnhandledThreadExceptionWarning")  # the thread's death is the case
@pytest.mark.parametrize("hold", [None, Hold()])
def test_a_producer_that_ends_silently_is_reported_not_waited_on(monkeypatch, hold):
    _faulty_queue_module(monkeypatch)
    got = []
    with pytest.raises(RuntimeError, match="t-lost.*ended without handing over"):
        for x in ahead(iter([1, 2]), window=2, name="t-lost", hold=hold):
            if isinstance(x, Hold):
                HoldWait(5).wait(x)  # woken by the thread's end, not by the 5 s timeout
            else:
                got.append(x)
    assert got == [1, 2]


def test_producer_error_is_delivered_to_a_holding_consumer():
    go = threading.Event()

    def items():
        yield 1
        go.wait(5)
        raise ValueError("page 2 cannot be rendered")

    waits = HoldWait(5)
    got = []
    with pytest.raises(ValueError, match="page 2"):
        for x in ahead(items(), window=2, hold=Hold()):
            if isinstance(x, Hold):
                go.set()
                waits.wait(x)
            else:
                got.append(x)
    assert got == [1]


def _fake_time(monkeypatch):
    now, slept = [0.0], []

    def sleep(s):
        slept.append(s)
        now[0] += s

    monkeypatch.setattr(ahead_mod, "_clock", lambda: now[0])
    monkeypatch.setattr(ahead_mod, "_sleep", sleep)
    return now, slept


def test_hold_wait_without_ready_backs_off_to_a_short_cap(monkeypatch):
    _, slept = _fake_time(monkeypatch)
    waits = HoldWait(600)
    for _ in range(8):
        waits.wait(Hold())
    assert len(slept) == 8 and all(s > 0 for s in slept)
    assert slept == sorted(slept) and slept[0] < slept[-1]  # backs off
    assert max(slept) <= 0.002  # the next item waits at most a couple of ms


def test_hold_wait_times_out_naming_what_and_context(monkeypatch):
    now, slept = _fake_time(monkeypatch)
    waits = HoldWait(0.5, "no page admitted yet")
    with pytest.raises(HoldTimeout, match=r"for the renders of x\.pdf.*no page admitted yet"):
        while True:
            waits.wait(Hold(what="the renders of x.pdf"))
    assert 0.5 <= now[0] < 0.51 and isinstance(HoldTimeout("x"), TimeoutError)


def test_hold_wait_spells_do_not_add_up(monkeypatch):
    now, _ = _fake_time(monkeypatch)
    waits = HoldWait(0.5)
    for _ in range(3):  # three spells of 0.4 s, an item between them: 1.2 s held in all, none too long
        start = now[0]
        while now[0] - start < 0.4:
            waits.wait(Hold())
        waits.reset("after item")
    now[0] += 0.4  # and one spell past the timeout does raise
    waits.wait(Hold())
    now[0] += 0.6
    with pytest.raises(HoldTimeout, match="after item"):
        waits.wait(Hold())
