"""graph_capture.run_bucket: the one step path of the bucketed graph sets (vision, prefill graphs):
forward() itself with capture off, else the bucket's graph replayed, captured at its first use;
a failed capture answers False (the caller runs eagerly) and replays nothing."""
from types import SimpleNamespace

from inference.worker.graph_capture import run_bucket


class Graph:
    def __init__(self, log, name):
        self.replay = lambda: log.append(("replay", name))


def _owner(capture: bool):
    return SimpleNamespace(capture=capture, graphs={})


def test_capture_off_runs_forward_and_never_captures():
    log, owner = [], _owner(False)
    assert run_bucket(owner, 256, lambda: log.append("forward"), lambda b: log.append(("capture", b)))
    assert log == ["forward"] and owner.graphs == {}


def test_missing_bucket_is_captured_once_then_replayed():
    log, owner = [], _owner(True)

    def capture_one(bucket):
        log.append(("capture", bucket))
        owner.graphs[bucket] = Graph(log, bucket)
        return True

    forward = lambda: log.append("forward")  # noqa: E731 - a captured set never runs it eagerly
    assert run_bucket(owner, 512, forward, capture_one)
    assert run_bucket(owner, 512, forward, capture_one)
    assert log == [("capture", 512), ("replay", 512), ("replay", 512)]


def test_failed_capture_answers_false_and_replays_nothing():
    log, owner = [], _owner(True)
    owner.graphs[256] = Graph(log, 256)
    assert not run_bucket(owner, 512, lambda: log.append("forward"), lambda b: False)
    assert log == []
