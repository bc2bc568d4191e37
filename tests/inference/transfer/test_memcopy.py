"""memcopy.copy_runs lands every byte whichever way it picks, and the chooser
follows the measured rates: the faster way wins, the other is retried."""
import pytest
import torch

from inference.transfer import memcopy


def _runs():
    # a large run (team copy_), a small one (memmoved even by the team way), an odd-sized one
    return [(0, 3 << 20, 2 << 20), ((2 << 20) + 64, 100, 4096), (5 << 20, 6 << 20, (1 << 20) + 12345)]


@pytest.fixture
def two_threads():
    """The team way needs torch's thread pool (the test suite runs with one)."""
    before = torch.get_num_threads()
    torch.set_num_threads(2)
    yield
    torch.set_num_threads(before)


@pytest.mark.parametrize("way", ["team", "caller"])
def test_copy_runs_moves_every_byte_once(monkeypatch, two_threads, way):
    chooser = memcopy._Chooser()
    monkeypatch.setattr(chooser, "pick", lambda: way)
    monkeypatch.setattr(memcopy, "_chooser", chooser)
    src = torch.randint(0, 255, (8 << 20,), dtype=torch.uint8)
    dst = torch.zeros_like(src)
    runs = _runs()
    assert sum(n for _, _, n in runs) >= memcopy.TEAM_MIN_BYTES  # the chosen way runs, not the small-copy path
    memcopy.copy_runs(dst, src, runs)
    expect = torch.zeros_like(src)
    for s, d, n in runs:
        expect[d:d + n] = src[s:s + n]
    assert torch.equal(dst, expect)
    assert len(chooser.samples[way]) == 1  # the copy was timed under the way that ran


def test_small_copy_runs_on_the_caller_untimed():
    src = torch.arange(4096, dtype=torch.int32).view(torch.uint8)
    dst = torch.zeros_like(src)
    before = {k: list(v) for k, v in memcopy._chooser.samples.items()}
    memcopy.copy_runs(dst, src, [(0, 8192, 8192), (8192, 0, 100)])
    assert torch.equal(dst[8192:], src[:8192]) and torch.equal(dst[:100], src[8192:8292])
    assert memcopy._chooser.samples == before


def test_chooser_follows_the_faster_way_and_retries_the_other(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    picks = [c.pick() for _ in range(memcopy.WINDOW + 1)]
    assert picks == ["caller"] * memcopy.WINDOW + ["team"]  # both ways measured before either is trusted
    for _ in range(memcopy.WINDOW):
        c.record("team", 1 << 20, 8_000_000)  # a stalled team: 8 ms a MiB
        c.record("caller", 1 << 20, 100_000)
    assert c.best == "caller" and c.pick() == "caller"
    clock[0] += int(memcopy.RETRY_S * 1e9) + 1
    picks = [c.pick() for _ in range(memcopy.WINDOW + 1)]
    assert picks == ["team"] * memcopy.WINDOW + ["caller"]  # retried for one window once the interval passed
    for _ in range(memcopy.WINDOW // 2 + 1):  # the core came back: a majority of fast team copies
        c.record("team", 1 << 20, 50_000)
    assert c.best == "team"


def test_a_stalled_retry_ends_early_and_backs_off(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    c.best, c.samples["caller"] = "caller", [0.1] * memcopy.WINDOW  # 10 GB/s
    waits = []
    for _ in range(4):
        start = clock[0]
        while c.pick() != "team":  # until the team is due again
            clock[0] += 10_000_000
        waits.append(clock[0] - start)
        c.record("team", 1 << 20, 8_000_000)  # the retry's first copy stalls...
        assert c.pick() == "caller"  # ...so its other copies are not made
    assert c.best == "caller"
    assert waits[1] < waits[2] < waits[3]  # retries of a losing way come less and less often
    assert waits[-1] <= memcopy.MAX_RETRY_S * 1e9 + 10_000_000
