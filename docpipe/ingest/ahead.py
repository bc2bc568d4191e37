"""Items of an iterator made ahead on a background thread: page renders
(render.prefetch_pages) and the benchmark's synthetic pages (seeded noise
images, ~5 ms each), whose making overlaps the engine's steps as rendering
does in `docpipe convert` instead of running on the step thread.

    for item in ahead(make_items(), window=4): ...

Order is kept; at most `window` items wait made. With `hold`, the
iterator yields `hold` instead of waiting when the next item is not made
yet (the page scheduler's HOLD: it polls the engine and asks again). When
`hold` is a `Hold` (the scheduler's HOLD is one), what is yielded is a
`Hold` bound to this iterator's readiness: its `ready` Event is set as soon
as the next item, the end or an error is there, so a consumer with nothing
else to do waits on it (woken at once) instead of polling, and its `what`
names the producing thread for a consumer's timeout error.

`Handoff` is the queue between the two threads with that readiness
protocol (the document feed, doc_feed.py, uses it too).

`HoldWait` is the consumer's side: with nothing else to do it waits on a
hold's `ready` (or, without one, sleeps 0.25 ms doubling to 2 ms, keeping
the next item's latency low without spinning a core), and raises
`HoldTimeout` naming what it waited for once one spell of holds (holds
with no item between them) has lasted `timeout_s`.

Errors: an exception in the iterator is raised in the consumer at that
point, after the items made before it. A producer thread that ended
without handing over an item, its end or its error (it cannot, short of a
bug here) is reported as a RuntimeError naming the thread, never waited on
forever. A consumer that stops early releases the thread: it finishes the
item in hand and exits, and the consumer's close waits for that (a render
must not outlive its document).
"""
from __future__ import annotations

import contextlib
import queue
import threading
import time
from collections.abc import Iterable, Iterator

_END = object()
_SLEEP_S = (0.00025, 0.002)  # first and longest sleep of a hold without a `ready` Event
_WAKE_S = 0.1  # a `ready` wait still wakes this often: a source that never sets it is still asked
_clock, _sleep = time.perf_counter, time.sleep  # module attributes: tests replace them
_ALIVE_CHECK_S = 0.1  # a blocking consumer checks the producer is alive this often (an item wakes it at once)


class Hold:
    """A source's "nothing ready now" (see module doc). `ready`: an Event set
    when the next item (or the end, or an error) may be there; None when the
    source cannot tell (the consumer polls). `what`: what is waited for."""

    __slots__ = ("ready", "what")

    def __init__(self, ready: threading.Event | None = None, what: str = "the job source's next item"):
        self.ready, self.what = ready, what

    def until(self, ready: threading.Event, what: str) -> "Hold":
        return Hold(ready, what)


class HoldTimeout(TimeoutError):
    """A source held, with nothing else for its consumer to do, for longer than allowed."""


class HoldWait:
    """A consumer's waits on a holding source (see module doc). `reset()` when
    an item arrives; `wait(hold)` for each hold with nothing else to do."""

    def __init__(self, timeout_s: float, context: str = ""):
        assert timeout_s > 0, "a hold timeout must be positive"
        self.timeout_s = timeout_s
        self.context = context  # what a timeout's message adds (e.g. the last item taken)
        self.started_s: float | None = None  # when this spell of holds began; None: not holding
        self.waits = 0  # waits in this spell

    def reset(self, context: str = "") -> None:
        """An item arrived: the next hold starts a new spell."""
        self.started_s, self.waits, self.context = None, 0, context

    def wait(self, hold: Hold) -> None:
        """Wait until the source may have its next item (see module doc)."""
        now = _clock()
        if self.started_s is None:
            self.started_s = now
        waited_s = now - self.started_s
        if waited_s >= self.timeout_s:
            raise HoldTimeout(f"waited {waited_s:.1f} s (timeout {self.timeout_s:g} s) for {hold.what}, "
                              f"with nothing else to do{'; ' + self.context if self.context else ''}")
        left_s = self.timeout_s - waited_s
        if hold.ready is not None:
            hold.ready.wait(min(left_s, _WAKE_S))
        else:
            _sleep(min(left_s, _SLEEP_S[1], _SLEEP_S[0] * 2 ** self.waits))
        self.waits += 1


class Handoff:
    """A producer thread's entries to one consumer through a bounded queue, the
    readiness protocol `ahead` and the document feed share. Producer side: its
    body runs inside `producing()` (an exception it raises is handed over, its
    end sets `ready`) and hands entries over with `put` (False once `stop` is
    set). Consumer side: `poll()` never waits (EMPTY when nothing is there;
    `ready` is then set as soon as that may change), `get()` waits. Either
    raises the producer's handed-over exception where it comes in order, and a
    RuntimeError (`lost`) when the thread ended without handing over an entry.
    `close()` stops the producer and joins its thread."""

    EMPTY = object()

    def __init__(self, window: int, thread: threading.Thread, lost: str):
        self.queue: queue.Queue = queue.Queue(maxsize=window)
        self.stop = threading.Event()
        self.ready = threading.Event()  # set after every put and when the producer ends; cleared by the consumer
        self.thread, self.lost = thread, lost

    def put(self, item) -> bool:
        while not self.stop.is_set():
            try:
                self.queue.put(item, timeout=0.1)
                self.ready.set()
                return True
            except queue.Full:
                continue
        return False

    @contextlib.contextmanager
    def producing(self):
        try:
            yield
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            self.put(_Raised(e))
        finally:
            self.ready.set()  # a consumer waiting on `ready` wakes and sees what is left (or that nothing will come)

    def close(self, join_s: float | None = None) -> None:
        self.stop.set()
        self.thread.join(join_s)

    def poll(self):
        try:
            return _taken(self.queue.get_nowait())
        except queue.Empty:
            pass
        self.ready.clear()  # cleared before the second look: a put after it sets it again
        try:
            return _taken(self.queue.get_nowait())
        except queue.Empty:
            pass
        return Handoff.EMPTY if self.thread.is_alive() else self._last()

    def get(self):
        while True:
            try:
                return _taken(self.queue.get(timeout=_ALIVE_CHECK_S))
            except queue.Empty:
                if not self.thread.is_alive():
                    return self._last()

    def _last(self):
        """The ended thread's last entry (put just before it ended), else the `lost` error."""
        try:
            return _taken(self.queue.get_nowait())
        except queue.Empty:
            raise RuntimeError(self.lost) from None


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def _taken(entry):
    """A taken entry, or the producer's exception raised in the consumer."""
    if isinstance(entry, _Raised):
        raise entry.error
    return entry


def ahead(items: Iterable, window: int = 4, name: str = "docpipe-ahead", hold: object = None) -> Iterator:
    assert window >= 1, "window must be at least 1"

    def produce() -> None:
        with handoff.producing():
            for item in items:
                if not handoff.put(item):
                    return
            handoff.put(_END)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    handoff = Handoff(window, thread, f"thread {name!r} ended without handing over its next item, its end or its error")
    if isinstance(hold, Hold):
        hold = hold.until(handoff.ready, f"the next item of thread {name!r}")
    take = handoff.get if hold is None else handoff.poll
    thread.start()
    try:
        while True:
            item = take()
            if item is Handoff.EMPTY:
                yield hold
                continue
            if item is _END:
                return
            yield item
    finally:
        handoff.close()
