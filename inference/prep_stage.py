"""Request preparation off the engine's step thread: `PrepStage` (used by
`LLM.generate` through prep_ahead.py and by docpipe's EngineRunner).

    stage = PrepStage(fn, threads)     # threads=0: inline (fn runs in submit)
    stage.submit(key, arg)             # queue fn(arg); never blocks
    for item in stage.take(wait):      # what is done, in submit order
        item.key, item.value, item.error
    stage.close()                      # drop what is queued, join the threads

Why: the thread that steps the engine also prepared every request (image to
array, placeholder expansion, M-RoPE positions); while it did, no step was
launched and the device idled. Here `threads` daemon threads run `fn`
instead, mostly while the step thread waits for the device (the GIL is free
then), and the step thread only takes the results.

Order: results come out in submit order, whatever the number of threads and
however long each took (a later item waits in the stage for the earlier
ones), so the engine sees requests in the order they were submitted, as when
preparing inline. `take(wait=True)` blocks until at least the oldest
submitted item is done (for a caller with nothing else to do); `take()`
never blocks.

Errors: an exception from `fn` is the item's `error` (the stage goes on);
the caller reports it for that item alone.

Bounds: the queue is not bounded here: every submitted argument is already
in memory, and the caller bounds what it submits (the page scheduler's
window). Threads start at the first submit after construction or `close`.

Lifecycle: `close()` drops queued items, waits for the ones being prepared
and joins the threads; results not taken are dropped. The stage can be used
again afterwards (new threads start on the next submit).

Threads: `fn` must be safe to run on `threads` threads at once next to the
caller's thread (no CUDA calls in `fn` when the caller's thread
graph-captures; see inference/processor.py Processor.host).
"""
from __future__ import annotations

import queue
import threading
from collections.abc import Callable
from dataclasses import dataclass

_STOP = object()  # a worker's end-of-work marker


@dataclass
class Prepared:
    """One submitted item, done."""

    key: object  # what the caller submitted with it
    value: object = None  # fn(arg); None when it failed
    error: Exception | None = None  # what fn raised; None when it succeeded


class PrepStage:
    """`fn(arg)` for submitted items on `threads` threads, results in submit order (see module doc)."""

    def __init__(self, fn: Callable[[object], object], threads: int, name: str = "docpipe-prep"):
        assert threads >= 0, "threads must be >= 0 (0 = inline)"
        self.fn, self.threads, self.name = fn, threads, name
        self._todo: queue.SimpleQueue = queue.SimpleQueue()  # (seq, key, arg) | _STOP
        self._done: dict[int, Prepared] = {}  # seq -> finished item, until taken in order
        self._cond = threading.Condition()
        self._next_seq = 0  # seq of the next submit
        self._next_out = 0  # seq of the next item to hand out
        self._workers: list[threading.Thread] = []
        self._epoch = 0  # bumped by close: results of an earlier epoch are dropped

    def pending(self) -> int:
        """Items submitted and not yet taken (queued, being prepared, or done)."""
        return self._next_seq - self._next_out

    def submit(self, key: object, arg: object) -> None:
        seq = self._next_seq
        self._next_seq += 1
        if self.threads == 0:
            self._done[seq] = self._run(key, arg)
            return
        if not self._workers:
            self._start()
        self._todo.put((self._epoch, seq, key, arg))

    def take(self, wait: bool = False) -> list[Prepared]:
        """Items done, oldest first, up to the first one not done; with `wait`,
        blocks until the oldest pending item is done (returns [] if none is pending)."""
        out = []
        with self._cond:
            if wait and self.pending():
                self._cond.wait_for(lambda: self._next_out in self._done)
            while self._next_out in self._done:
                out.append(self._done.pop(self._next_out))
                self._next_out += 1
        return out

    def close(self) -> None:
        """Drop queued items and results not taken; join the threads."""
        workers, self._workers = self._workers, []
        with self._cond:
            self._epoch += 1  # items a worker still finishes are of the old epoch: dropped
        for _ in workers:
            self._todo.put(_STOP)
        for w in workers:
            w.join()
        while True:  # nothing can be queued now but stale items behind the stop markers
            try:
                self._todo.get_nowait()
            except queue.Empty:
                break
        with self._cond:
            self._done.clear()
            self._next_out = self._next_seq

    def _start(self) -> None:
        for i in range(self.threads):
            w = threading.Thread(target=self._work, name=f"{self.name}-{i}", daemon=True)
            w.start()
            self._workers.append(w)

    def _run(self, key: object, arg: object) -> Prepared:
        try:
            return Prepared(key, self.fn(arg))
        except Exception as e:  # noqa: BLE001 - the item's error; the caller reports it for that item
            return Prepared(key, error=e)

    def _work(self) -> None:
        while True:
            item = self._todo.get()
            if item is _STOP:
                return
            epoch, seq, key, arg = item
            if epoch != self._epoch:
                continue  # queued before a close: dropped
            done = self._run(key, arg)
            with self._cond:
                if epoch == self._epoch:
                    self._done[seq] = done
                    self._cond.notify_all()
