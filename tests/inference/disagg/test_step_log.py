"""StepLog: a worker's recent step durations, read as (steps since a step number, longest of them)."""
from __future__ import annotations

from inference.disagg.step_log import StepLog


def test_steps_since_a_mark_and_the_longest():
    log = StepLog(size=4)
    assert log.since(0) == (0, 0.0)  # no step ran since
    log.add(0.010)
    mark = log.count
    for seconds in (0.002, 0.030, 0.004):
        log.add(seconds)
    assert log.since(mark) == (3, 0.030)
    assert log.since(0) == (4, 0.030)


def test_steps_no_longer_kept_give_no_longest():
    log = StepLog(size=4)
    for i in range(6):
        log.add(0.001 * (i + 1))
    assert log.since(2) == (4, 0.006)  # steps 2..5 are the four kept
    assert log.since(1) == (5, -1.0)  # step 1 was overwritten: count known, longest not
