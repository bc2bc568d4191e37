"""Items of an iterator made ahead on a background thread: page renders
(render.prefetch_pages) and the benchmark's synthetic pages (seeded noise
images, ~5 ms each), whose making overlaps the engine's steps as rendering
does in `docpipe convert` instead of running on the step thread.

    for item in ahead(make_items(), window=4): ...

Order is kept; at most `window` items wait made. With `hold`, the
iterator yields `hold` instead of waiting when the next item is not made
yet (the page scheduler's HOLD: it polls the engine and asks again). An exception in the
iterator is raised in the consumer at that point. A consumer that stops
early releases the thread (it finishes the item in hand and exits).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Iterable, Iterator

_END = object()


class _Raised:
    def __init__(self, error: BaseException):
        self.error = error


def ahead(items: Iterable, window: int = 4, name: str = "docpipe-ahead", hold: object = None) -> Iterator:
    assert window >= 1, "window must be at least 1"
    made: queue.Queue = queue.Queue(maxsize=window)
    stop = threading.Event()

    def put(item) -> bool:
        while not stop.is_set():
            try:
                made.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def produce() -> None:
        try:
            for item in items:
                if not put(item):
                    return
        except BaseException as e:  # noqa: BLE001 - handed to the consumer, raised there
            put(_Raised(e))
            return
        put(_END)

    thread = threading.Thread(target=produce, name=name, daemon=True)
    thread.start()
    try:
        while True:
            try:
                item = made.get_nowait() if hold is not None else made.get()
            except queue.Empty:
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
