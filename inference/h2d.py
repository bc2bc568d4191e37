"""Host -> device copies that never stall the host.

A CUDA copy from pageable host memory first synchronises its stream: the
host blocks until every kernel queued before it has run. Inside the engine's
step loop that undoes the overlap of host work with the launched step (and
in the document pipeline, every request's image upload waited for the GPU to
drain). So every upload goes through pinned memory, and two more things keep
the host from waiting:

- A pinned ring per device (DOCPIPE_PINNED_RING_MB, default 256): data is
  copied into the next free region of one pinned buffer allocated once.
  Pinning memory per upload (torch's pin_memory()) costs a page-locking
  allocation whenever the caching host allocator has no free block of that
  size, and its blocks only come free when their copy has run.
- An upload stream per device: the copy is queued there, not behind the
  compute stream's queued kernels, so it runs at once and its ring region
  comes free within microseconds. The caller's current stream waits on the
  copy's event before anything it queues later, and the result is allocated
  on the upload stream and marked as used by the caller's stream
  (record_stream), so the caching allocator never hands its memory to
  another tensor while either stream may still touch it.

Lifecycle of a ring region: reserve (host copies into it) -> copy queued on
the upload stream -> event recorded -> the region is reused once that event
has completed (the oldest region is waited for only when the ring is full).
Uploads larger than a quarter of the ring, and uploads during CUDA graph
capture, take the plain pin_memory() path. DOCPIPE_PINNED_RING_MB=0 turns the
ring and upload stream off (that path for everything). The ring comes from
torch's caching host allocator, which rounds its size up to a power of two
and keeps it for the life of the process.

Graph capture: only the capturing thread is detected. Another thread
uploading while a graph is captured in torch's default "global" mode makes
calls (event queries, allocations) that CUDA forbids then, as would any
allocation or pin_memory() from that thread; lazy capture beside such
threads needs capture_error_mode="thread_local".
"""
from __future__ import annotations

import collections
import os
import threading

import numpy as np
import torch

from inference.streams import side_stream

RING_ENV = "DOCPIPE_PINNED_RING_MB"
_ALIGN = 512  # region start alignment, bytes: any dtype's view of a region is aligned


def to_device(data, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`data` (tensor, numpy array or list) on `device`, without a host sync on CUDA.

    The result is ready for work the caller queues afterwards on its current
    stream of `device` (this thread's); work on any other stream must first
    wait for that stream. `data` is copied before the call returns, so the
    caller may reuse it at once."""
    t = data if isinstance(data, torch.Tensor) else _host_tensor(data, dtype)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    device = torch.device(device)
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    # checked first: making the uploader (page-locked allocation, stream) is not capturable
    if torch.cuda.is_current_stream_capturing():
        return t.pin_memory().to(device, non_blocking=True)
    uploader = _uploader(device)
    if uploader is None:
        return t.pin_memory().to(device, non_blocking=True)
    return uploader.upload(t)


def _host_tensor(data, dtype: torch.dtype | None) -> torch.Tensor:
    """A host tensor of a list (or array): through numpy, which converts Python lists 2-4x faster
    than torch.as_tensor (a sampler step's 512 x 4 penalty rows: ~120 vs ~220 us on this host).
    Only plain numbers take that way (no float into an integer dtype, no int32 overflow); anything
    else goes to torch.as_tensor, which accepts or rejects it as it always did."""
    if isinstance(data, (list, tuple)) and dtype in _NUMPY_DTYPES:
        try:
            array = np.asarray(data)
        except (ValueError, TypeError, OverflowError):
            array = None  # ragged or odd contents: torch's own conversion says what is wrong
        if array is not None and array.dtype.kind in ("bif" if dtype == torch.float32 else "bi"):
            if dtype != torch.int32 or not array.size or (-2 ** 31 <= array.min() and array.max() < 2 ** 31):
                return torch.from_numpy(array.astype(_NUMPY_DTYPES[dtype], copy=False))
    return torch.as_tensor(data, dtype=dtype)


_NUMPY_DTYPES = {torch.int64: np.int64, torch.int32: np.int32, torch.float32: np.float32, torch.bool: np.bool_}


class RingRegions:
    """Regions of a ring of `capacity` bytes, handed out in order; each stays
    busy until its event (anything with query() and synchronize()) completes."""

    def __init__(self, capacity: int):
        self.capacity = capacity
        self.head = 0  # end of the newest region
        self.in_flight: collections.deque = collections.deque()  # (start, end, event), oldest first
        self.done_events: list = []  # completed events, for reuse

    def reserve(self, num_bytes: int) -> int:
        """Start of a free region of num_bytes (<= capacity); waits for the
        oldest regions' events only when the ring has no room."""
        if num_bytes > self.capacity:
            raise ValueError(f"a region of {num_bytes} bytes does not fit a ring of {self.capacity}")
        while self.in_flight and self.in_flight[0][2].query():
            self.done_events.append(self.in_flight.popleft()[2])
        while True:
            head = -(-self.head // _ALIGN) * _ALIGN
            if not self.in_flight:
                return head if head + num_bytes <= self.capacity else 0
            tail = self.in_flight[0][0]  # start of the oldest busy region
            if self.in_flight[-1][0] >= tail:  # not wrapped: free are [head, capacity) and [0, tail)
                if head + num_bytes <= self.capacity:
                    return head
                if num_bytes <= tail:
                    return 0
            elif tail - head >= num_bytes:  # wrapped: free is [head, tail)
                return head
            event = self.in_flight.popleft()[2]
            event.synchronize()
            self.done_events.append(event)

    def commit(self, start: int, num_bytes: int, event) -> None:
        """The region reserve() returned is in use until `event` completes."""
        self.in_flight.append((start, start + num_bytes, event))
        self.head = start + num_bytes


class PinnedUploader:
    """One device's pinned ring and upload stream (see the module docstring). Thread-safe."""

    def __init__(self, device: torch.device, capacity_bytes: int):
        self.device = device
        self.regions = RingRegions(capacity_bytes)
        self.buffer = torch.empty(capacity_bytes, dtype=torch.uint8, pin_memory=True)
        self.stream = side_stream(device, "upload")  # one per purpose: never another thread's (streams.py)
        self.lock = threading.Lock()

    def upload(self, t: torch.Tensor) -> torch.Tensor:
        """A copy of host tensor `t` on the device (contiguous), under to_device's contract."""
        num_bytes = t.numel() * t.element_size()
        if num_bytes == 0 or num_bytes > self.regions.capacity // 4:
            return t.pin_memory().to(self.device, non_blocking=True)
        with self.lock:
            start = self.regions.reserve(num_bytes)
            staged = self.buffer[start:start + num_bytes].view(t.dtype).view(t.shape)
            staged.copy_(t)
            consumer = torch.cuda.current_stream(self.device)
            spare = self.regions.done_events
            event = spare.pop() if spare else torch.cuda.Event()
            with torch.cuda.stream(self.stream):
                out = torch.empty(t.shape, dtype=t.dtype, device=self.device)
                out.copy_(staged, non_blocking=True)
                event.record(self.stream)
            consumer.wait_event(event)
            out.record_stream(consumer)
            self.regions.commit(start, num_bytes, event)
        return out


_UPLOADERS: dict[int, PinnedUploader | None] = {}
_UPLOADERS_LOCK = threading.Lock()


def _uploader(device: torch.device) -> PinnedUploader | None:
    index = device.index if device.index is not None else torch.cuda.current_device()
    found = _UPLOADERS.get(index, False)
    if found is not False:
        return found
    with _UPLOADERS_LOCK:
        if index not in _UPLOADERS:
            raw = os.environ.get(RING_ENV, "256").strip() or "0"
            if not raw.isdigit():
                raise ValueError(f"{RING_ENV}={raw!r}: expected a whole number of MiB (0 turns the ring off)")
            megabytes = int(raw)
            dev = torch.device("cuda", index)
            _UPLOADERS[index] = PinnedUploader(dev, megabytes << 20) if megabytes > 0 else None
        return _UPLOADERS[index]
