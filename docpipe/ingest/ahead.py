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


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def ahead(items: Iterable, window: int = 4, name: str = "docpipe-ahead", hold: object = None) -> Iterator:
    assert window >= 1, "window must be at least 1"
    made: queue.Queue = queue.Queue(maxsize=window)
    stop = threading.Event()
    ready = threading.Event()  # set after every put and when the producer ends; cleared by the consumer
    if isinstance(hold, Hold):
        hold = hold.until(ready, f"the next item of thread {name!r}")

    def put(item) -> bool:
        while not stop.is_set():
            try:
                made.put(item, timeout=0.1)
                ready.set()
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
            put(_END)
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Raised(e))
        finally:
            ready.set()  # a consumer waiting on `ready` wakes and sees what is left (or that nothing will come)

    def take():
        """The next queued entry; `hold` when holding and none is there yet."""
        while True:
            try:
                return made.get_nowait() if hold is not None else made.get(timeout=_ALIVE_CHECK_S)
            except queue.Empty:
                pass
            if hold is not None:
                ready.clear()  # cleared before the second look: a put after it sets it again
                try:
                    return made.get_nowait()
                except queue.Empty:
                    pass
            if not thread.is_alive():
                try:  # it may have put its last entry just before ending
                    return made.get_nowait()
                except queue.Empty:
                    raise RuntimeError(f"thread {name!r} ended without handing over its next item, "
                                       "its end or its error") from None
            if hold is not None:
                return hold

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            item = take()
            if item is hold:
                yield hold
                continue
            if item is _END:
                return
            if isinstance(item, _Raised):
                raise item.error
            yield item
    finally:
        stop.set()
        thread.join()
