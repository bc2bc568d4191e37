"""memcopy.copy_runs lands every byte whichever way it picks, and the chooser
follows the measured rates: the faster way wins, the other is retried."""
import pytest
import torch

from inference.transfer import memcopy

_TEAM_HAS_CORES = memcopy.team_has_cores  # the real one: the fixture below stands in for it elsewhere


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
    monkeypatch.setattr(memcopy, "chooser_for", lambda n: chooser)
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
    before = {k: {w: list(v) for w, v in c.samples.items()} for k, c in memcopy._choosers.items()}
    memcopy.copy_runs(dst, src, [(0, 8192, 8192), (8192, 0, 100)])
    assert torch.equal(dst[8192:], src[:8192]) and torch.equal(dst[:100], src[8192:8292])
    assert {k: c.samples for k, c in memcopy._choosers.items()} == before


@pytest.fixture(autouse=True)
def free_cores(monkeypatch):
    """Team retries as if the other core were free (the test machine's load must not decide)."""
    monkeypatch.setattr(memcopy, "team_has_cores", lambda: True)


def test_a_team_retry_waits_while_other_tasks_hold_the_cores(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    c.best, c.samples["caller"] = "caller", [0.1] * memcopy.WINDOW
    busy = [True]
    monkeypatch.setattr(memcopy, "team_has_cores", lambda: not busy[0])
    assert c.pick() == "caller" and c.samples["team"] == [] and not c.probe_left  # due, but no core: no stalled copy
    assert c.pick() == "caller"  # not looked at again before the interval
    busy[0] = False
    clock[0] += int(memcopy.RETRY_S["team"] * 1e9)
    assert c.pick() == "team" and c.probe_left == memcopy.PROBE  # the same interval, not doubled


@pytest.mark.parametrize("running, cores, threads, expect", [(1, 2, 2, True), (2, 2, 2, False), (3, 8, 4, True), (6, 8, 4, False)])
def test_team_has_cores_reads_the_running_count(monkeypatch, tmp_path, running, cores, threads, expect):
    import builtins
    real_open = builtins.open
    fake = tmp_path / "loadavg"
    fake.write_text(f"1.00 1.00 1.00 {running}/90 123\n")
    monkeypatch.setattr(builtins, "open", lambda p, *a: real_open(fake if p == "/proc/loadavg" else p, *a))
    monkeypatch.setattr(memcopy, "_CORES", cores)
    monkeypatch.setattr(memcopy.torch, "get_num_threads", lambda: threads)
    assert _TEAM_HAS_CORES() is expect


def _retry(c, way, ns_per_mib):
    """Feed one whole retry of `way` (PROBE copies of 1 MiB) unless it ends early."""
    for _ in range(memcopy.PROBE):
        assert c.pick() == way
        c.record(way, 1 << 20, ns_per_mib)
        if not c.probe_left:
            return


def test_chooser_follows_the_faster_way_and_retries_the_other(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    _retry(c, "caller", 100_000)  # the caller is measured first, then the team is tried
    assert c.pick() == "team"
    c.record("team", 1 << 20, 8_000_000)  # a stalled team: 8 ms a MiB
    assert c.best == "caller" and c.pick() == "caller"
    clock[0] += int(memcopy.RETRY_S["team"] * 1e9) + 1
    _retry(c, "team", 50_000)  # the core came back: the retry alone decides
    assert c.best == "team" and c.pick() == "team"


def test_a_retry_is_decided_on_its_median_not_its_first_copy(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    c.best, c.samples["caller"], c.due_ns["caller"] = "caller", [0.1] * memcopy.WINDOW, 1 << 60  # 10 GB/s
    assert c.pick() == "team"
    c.record("team", 1 << 20, 200_000)  # a team that slept: its first copy is slower than the caller...
    assert c.best == "caller" and c.pick() == "team"  # ...but the retry goes on
    c.record("team", 1 << 20, 60_000)
    c.record("team", 1 << 20, 60_000)
    assert c.best == "team"
    for _ in range(2):  # the chosen team's own copies push the slow first one out of the window
        assert c.pick() == "team"
        c.record("team", 1 << 20, 60_000)
    for _ in range(2):  # two stalls in the window do not move the median
        c.record("team", 1 << 20, 8_000_000)
    assert c.best == "team"
    c.record("team", 1 << 20, 8_000_000)  # a third does
    assert c.best == "caller"


def test_a_cold_first_team_copy_does_not_hand_the_size_to_the_caller(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    _retry(c, "caller", 140_000)  # the caller is measured first
    assert c.pick() == "team"
    c.record("team", 1 << 20, 200_000)  # its team wakes up: 1.4x the caller, not a stall
    assert c.best == "team" and c.pick() == "team"
    c.record("team", 1 << 20, 80_000)
    c.record("team", 1 << 20, 80_000)  # warm: judged on three copies, the team stays
    assert c.best == "team" and c.pick() == "team"
    for _ in range(3):
        c.record("team", 1 << 20, 400_000)  # slower than the caller over a full judgement: it goes
    assert c.best == "caller"


def test_sizes_are_chosen_apart():
    assert memcopy.chooser_for(4 << 20) is memcopy.chooser_for((4 << 20) + 5) is not memcopy.chooser_for(16 << 20)


def test_a_stalled_retry_ends_early_and_backs_off(monkeypatch):
    clock = [0]
    monkeypatch.setattr(memcopy.time, "monotonic_ns", lambda: clock[0])
    c = memcopy._Chooser()
    c.best, c.samples["caller"] = "caller", [0.1] * memcopy.WINDOW  # 10 GB/s
    waits = []
    for _ in range(6):
        start = clock[0]
        while c.pick() != "team":  # until the team is due again
            clock[0] += 10_000_000
        waits.append(clock[0] - start)
        c.record("team", 1 << 20, 8_000_000)  # the retry's first copy stalls...
        assert c.pick() == "caller"  # ...so its other copies are not made
    assert c.best == "caller"
    assert waits[1] < waits[2] < waits[3]  # retries of a losing way come less and less often
    assert waits[-1] <= memcopy.MAX_RETRY_S["team"] * 1e9 + 10_000_000


@pytest.mark.parametrize("runs", [
    [(0, 0, 4096), (4096, 8193, 4096)],  # the second run ends past dst
    [(0, 0, 4096), (-1, 0, 10)],  # a negative offset
    [(0, 0, 4096), (0, 100, 0)],  # an empty run
])
@pytest.mark.parametrize("way", ["team", "caller"])
def test_copy_runs_outside_the_tensors_is_refused_before_any_copy(monkeypatch, two_threads, runs, way):
    """Raw memmoves: every run is checked inside both tensors before the first byte moves, on
    every way (small copies, team, caller)."""
    from inference.transfer import TransferError

    chooser = memcopy._Chooser()
    monkeypatch.setattr(chooser, "pick", lambda: way)
    monkeypatch.setattr(memcopy, "chooser_for", lambda n: chooser)
    monkeypatch.setattr(memcopy, "TEAM_MIN_BYTES", 1)  # small runs take the chosen way too
    src = torch.randint(1, 255, (12288,), dtype=torch.uint8)
    dst = torch.zeros(12288, dtype=torch.uint8)
    with pytest.raises(TransferError, match=r"^memcopy: copy of .* is outside the pools \(12288, 12288\)"):
        memcopy.copy_runs(dst, src, runs)
    assert torch.count_nonzero(dst) == 0


def test_copy_addresses_are_base_pointers_plus_offsets():
    from inference.transfer.source import copy_addresses

    src, dst = torch.zeros(100, dtype=torch.uint8), torch.zeros(50, dtype=torch.uint8)
    got = copy_addresses(src, dst, [(0, 0, 50), (60, 10, 40)], "t")
    assert got == [(dst.data_ptr(), src.data_ptr(), 50), (dst.data_ptr() + 10, src.data_ptr() + 60, 40)]
