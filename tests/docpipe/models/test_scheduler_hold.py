"""PageScheduler with a job source that says HOLD ("nothing ready now"): the
runner keeps being polled while the source holds, results are those of a
source that never holds, and holding with nothing in flight makes the
scheduler ask again (the next job is being made on another thread)."""
from __future__ import annotations

from docpipe.models.base import get_family
from docpipe.models.scheduler import HOLD, PageFlow, PageScheduler
from test_scheduler import StepRunner, _job


def _run(runner, jobs, window=4):
    return list(PageScheduler(runner, PageFlow(get_family("mineru25")), window).run(jobs))


def test_holding_polls_the_runner_and_changes_no_result():
    def jobs():
        yield _job(0)
        for _ in range(2):  # page 1 still rendering: the engine goes on with page 0 (3 requests)
            yield HOLD
        yield _job(1)

    held = StepRunner()
    pages = _run(held, jobs())
    plain = _run(StepRunner(), [_job(0), _job(1)])
    assert [(p.page_idx, [b.text for b in p.blocks]) for p in pages] == \
        [(p.page_idx, [b.text for b in p.blocks]) for p in plain]
    # page 0's layout was answered while the source held, before page 1 was even admitted
    assert held.log.index(("answer", 0, "layout")) < held.log.index(("submit", 1, "layout"))


def test_holding_with_nothing_in_flight_asks_again():
    asked = []

    def jobs():
        for _ in range(3):  # the first page is still being made: nothing is in flight yet
            asked.append("hold")
            yield HOLD
        yield _job(0)

    runner = StepRunner()
    pages = _run(runner, jobs())
    assert asked == ["hold"] * 3 and [p.page_idx for p in pages] == [0]
    assert [(p.page_idx, [b.text for b in p.blocks]) for p in pages] == \
        [(p.page_idx, [b.text for b in p.blocks]) for p in _run(StepRunner(), [_job(0)])]
