"""PageScheduler waiting on a source that holds with no page in flight: it
waits on the source's readiness (ahead.py's bound HOLD) or sleeps briefly,
never spinning; a source that holds too long fails the run with HoldTimeout
naming what it waited for; a producer's error reaches the caller."""
from __future__ import annotations

import threading

import pytest

import docpipe.ingest.ahead as ahead_mod
from docpipe.ingest.ahead import Hold, ahead
from docpipe.models.base import get_family
from docpipe.models.scheduler import DEFAULT_HOLD_TIMEOUT_S, HOLD, HoldTimeout, PageFlow, PageScheduler
from test_scheduler import StepRunner, _job


def _sched(**kw):
    return PageScheduler(StepRunner(), PageFlow(get_family("mineru25")), 2, **kw)


def _texts(pages):
    return [(p.page_idx, [b.text for b in p.blocks]) for p in pages]


def test_default_timeout_is_a_sane_bound():
    assert _sched().hold_timeout_s == DEFAULT_HOLD_TIMEOUT_S and 60 <= DEFAULT_HOLD_TIMEOUT_S <= 3600


def test_plain_hold_sleeps_between_asks(monkeypatch):
    slept = []
    monkeypatch.setattr(ahead_mod, "_sleep", slept.append)  # record instead of sleeping

    def jobs():
        for _ in range(5):  # nothing in flight yet: the first page is still being made
            yield HOLD
        yield _job(0)

    pages = list(_sched().run(jobs()))
    assert _texts(pages) == _texts(_sched().run([_job(0)]))
    assert len(slept) == 5 and all(0 < s <= 0.002 for s in slept)  # one short sleep per hold, no spinning


def test_bound_hold_waits_for_the_next_page_instead_of_polling(monkeypatch):
    monkeypatch.setattr(ahead_mod, "_sleep", lambda s: pytest.fail("a bound hold must be waited on, not slept"))
    go, holds = threading.Event(), []

    def made():
        go.wait(5)  # the first render takes a while: the scheduler has nothing in flight
        yield _job(0)

    def counted(source):
        for x in source:
            if isinstance(x, Hold):
                holds.append(x.what)
            yield x

    timer = threading.Timer(0.05, go.set)
    timer.start()
    pages = list(_sched().run(counted(ahead(made(), window=2, name="t-pages", hold=HOLD))))
    timer.join()
    assert _texts(pages) == _texts(_sched().run([_job(0)]))
    # woken by the page's arrival: a handful of asks over 50 ms (a 1 ms poll would ask ~50 times)
    assert 1 <= len(holds) <= 3 and "t-pages" in holds[0]


def test_holding_forever_with_nothing_in_flight_raises_a_clear_error():
    def jobs():
        yield _job(0)
        while True:  # the producer of page 2 never answers
            yield HOLD

    got = []
    with pytest.raises(HoldTimeout, match=r"0\.05 s.*job source's next item.*last page admitted: page 1"):
        for page in _sched(hold_timeout_s=0.05).run(jobs()):
            got.append(page)
    assert [p.page_idx for p in got] == [0] and got[0].ok  # the pages done before are kept


def test_a_stuck_ahead_thread_is_named_in_the_error():
    go = threading.Event()

    def made():
        yield _job(0)
        go.wait(5)  # stuck rendering the next page
        yield _job(1)

    source = ahead(made(), window=2, name="t-stuck-renders", hold=HOLD)
    try:
        with pytest.raises(HoldTimeout, match="t-stuck-renders"):
            list(_sched(hold_timeout_s=0.05).run(source))
    finally:
        go.set()
        source.close()  # joins the producer


def test_a_producer_error_while_holding_reaches_the_caller():
    go = threading.Event()

    def made():
        yield _job(0)
        go.wait(5)
        raise ValueError("page 2 cannot be rendered")

    got = []

    def jobs():
        for x in ahead(made(), window=2, hold=HOLD):
            if isinstance(x, Hold) and got:
                go.set()  # fail once page 1 is out: the scheduler then waits with nothing in flight
            yield x

    with pytest.raises(ValueError, match="page 2"):  # not a HoldTimeout: the error is handed over at once
        for page in _sched(hold_timeout_s=2).run(jobs()):
            got.append(page)
    assert [p.page_idx for p in got] == [0]
