"""Host -> device uploads: the pinned ring's region bookkeeping (CPU, with
fake events) and the CUDA uploader (GPU: contents, stream ordering, and that
an upload does not wait for the compute stream's queued kernels)."""
from __future__ import annotations

import random

import pytest
import torch

from inference.h2d import RingRegions, to_device


class FakeEvent:
    def __init__(self):
        self.done = False
        self.waited = False

    def query(self) -> bool:
        return self.done

    def synchronize(self) -> None:
        self.waited = True
        self.done = True


def _overlaps(a: tuple[int, int], b: tuple[int, int]) -> bool:
    return a[0] < b[1] and b[0] < a[1]


def test_regions_never_overlap_a_busy_region():
    rng = random.Random(0)
    ring = RingRegions(4096)
    made = []
    for _ in range(2000):
        size = rng.choice([1, 7, 100, 512, 700, 1024, 1500])
        busy = [(s, e) for s, e, ev in ring.in_flight if not ev.done]
        start = ring.reserve(size)
        still_busy = [(s, e) for s, e, ev in ring.in_flight if not ev.done]
        assert 0 <= start and start + size <= ring.capacity
        assert start % 512 == 0
        assert not any(_overlaps((start, start + size), r) for r in still_busy), (start, size, busy)
        made.append(FakeEvent())
        ring.commit(start, size, made[-1])
        for _, _, ev in ring.in_flight:  # copies complete in order, some of them each round
            if rng.random() < 0.3:
                ev.done = True
            else:
                break
    assert any(ev.waited for ev in made)  # the ring filled up at times, and then waited for the oldest region


def test_completed_regions_are_reused_without_waiting():
    ring = RingRegions(2048)
    for _ in range(20):
        start = ring.reserve(1024)
        ev = FakeEvent()
        ring.commit(start, 1024, ev)
        ev.done = True
    assert not any(ev.waited for *_, ev in ring.in_flight)
    assert len(ring.done_events) > 0


def test_full_ring_waits_for_the_oldest_only():
    ring = RingRegions(2048)
    events = []
    for _ in range(2):
        start = ring.reserve(1024)
        events.append(FakeEvent())
        ring.commit(start, 1024, events[-1])
    assert ring.reserve(1024) == 0
    assert events[0].waited and not events[1].waited


def _free_candidate(ring: RingRegions, size: int) -> bool:
    """Whether the ring's next place (after the newest region, aligned) or its
    start holds `size` bytes clear of every region whose copy has not run."""
    head = -(-ring.head // 512) * 512
    busy = [(s, e) for s, e, ev in ring.in_flight if not ev.done]
    newest_start = ring.in_flight[-1][0] if ring.in_flight else None
    starts = [head]
    if not busy or all(s >= newest_start for s, _ in busy):  # not wrapped: the start is behind the oldest
        starts.append(0)
    return any(start + size <= ring.capacity and not any(_overlaps((start, start + size), r) for r in busy)
               for start in starts)


@pytest.mark.parametrize("capacity", [4096, 4000, 1536])
def test_waits_only_when_no_place_is_free(capacity):
    """No needless waits (a copy still in flight is waited for only when
    neither the next place nor the ring's start is clear), waits go oldest
    first, and capacities that are not a multiple of the alignment work."""
    rng = random.Random(capacity)
    ring = RingRegions(capacity)
    num_waits = 0
    for _ in range(2000):
        size = rng.choice([1, 300, 512, 513, capacity // 4, capacity // 2, capacity])
        room = _free_candidate(ring, size)
        in_flight = [ev for *_, ev in ring.in_flight]  # a waited event leaves in_flight: only these can be
        start = ring.reserve(size)
        assert start % 512 == 0 and start + size <= capacity
        waited = [i for i, ev in enumerate(in_flight) if ev.waited]
        assert not (room and waited), "waited although a place was free"
        assert all(ev.done for ev in in_flight[:max(waited, default=-1) + 1]), "a newer copy was waited for first"
        num_waits += len(waited)
        ring.commit(start, size, FakeEvent())
        for _, _, ev in ring.in_flight:
            if rng.random() < 0.4:
                ev.done = True
            else:
                break
    assert 0 < num_waits < 2000


def test_region_larger_than_ring_is_refused():
    with pytest.raises(ValueError, match="does not fit"):
        RingRegions(1024).reserve(2048)


def test_cpu_to_device_keeps_values_and_dtype():
    out = to_device([[1, 2], [3, 4]], torch.device("cpu"), torch.int32)
    assert out.dtype == torch.int32 and out.tolist() == [[1, 2], [3, 4]]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="the pinned uploader needs a CUDA device")
def test_cuda_uploads_match_and_do_not_wait_for_queued_kernels():
    dev = torch.device("cuda")
    gen = torch.Generator().manual_seed(0)
    hosts = [torch.randint(0, 255, (n,), generator=gen, dtype=torch.uint8) for n in (1, 10, 4096, 1 << 20, 3 << 20)]
    hosts += [torch.randn(333, 77, generator=gen), torch.arange(1000, dtype=torch.int64)[::3]]
    torch.cuda.synchronize()
    torch.cuda._sleep(2_000_000_000 // 1000 * 200)  # ~0.2 s of queued work on the compute stream
    queued = torch.cuda.Event()
    queued.record()
    outs = [to_device(h, dev) for h in hosts for _ in range(100)]  # 420 MB > the 256 MB ring: regions get reused
    assert not queued.query(), "an upload waited for the compute stream's queued kernels"
    doubled = [o * 2 for o in outs]  # compute-stream work ordered after each upload
    torch.cuda.synchronize()
    for i, h in enumerate(h for h in hosts for _ in range(100)):
        assert torch.equal(doubled[i].cpu(), h * 2)


def test_lists_convert_through_numpy_with_the_asked_dtype():
    from inference.h2d import to_device

    for data, dtype in (([[1, 2], [3, 4]], torch.int64), ([0.5, 1.5], torch.float32), ([True, False], torch.bool),
                        ([7, -1], torch.int32)):
        out = to_device(data, torch.device("cpu"), dtype)
        assert out.dtype == dtype and out.tolist() == data
    with pytest.raises((ValueError, TypeError)):
        to_device([[1, 2], [3]], torch.device("cpu"), torch.int64)  # ragged: torch's error
    with pytest.raises(TypeError):
        to_device([None], torch.device("cpu"), torch.float32)  # not a number: torch's error, not NaN
    with pytest.raises(RuntimeError):
        to_device([2 ** 40], torch.device("cpu"), torch.int32)  # overflows int32: torch's error, no wrap
