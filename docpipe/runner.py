"""Document worker pool: runs `fn(source, opts)` for each source in worker
processes, so that a hostile PDF costs only its own document.

Contract:
- Every source yields exactly one DocumentResult, in completion order; a
  source listed twice runs twice (tasks are keyed by position, not path).
- `fn` is a picklable top-level function, run in `opts.workers` processes of
  the 'spawn' context (fork is unsafe once torch or threaded libraries load).
- Over `opts.timeout_s` wall seconds: the worker is killed and replaced, the
  document fails with "timed out after N s".
- Workers run under RLIMIT_AS = `opts.max_memory_mb` (0: none). A MemoryError
  fails the document ("out of memory (limit N MB)") and the worker retires.
- A worker that dies (segfault, os._exit, OOM killer) is replaced; its document
  fails with "worker crashed (signal 11: SIGSEGV)" or "... (exit code N)".
- An exception from `fn` becomes a failure "<Type>: <message>".
- Errors made here do not repeat the path: `source_path` names the file and
  the CLI prints "<source_path>: <error>".

Progress: `on_pages(n)` is called in the parent with page increments. Inside
`fn`, `report_pages(n)` gives live progress on long documents; pages a document
did not report are counted from `len(result.pages)` when it ends. The CLI
shows pages/s as (sum of increments) / (wall seconds since the batch began).

Worker lifecycle: spawned -> busy(task, deadline) -> busy(next task) ... ->
stopped (None sent: no task left) | killed (timeout) | dead (crash) | retired
(after MemoryError); the last three are replaced while tasks remain.
"""
from __future__ import annotations

import multiprocessing as mp
import pickle
import signal
import threading
import time
import traceback
from dataclasses import dataclass
from multiprocessing.connection import Connection, wait
from pathlib import Path
from typing import Callable, Iterator

from docpipe.config import ConvertOptions
from docpipe.schema import DocumentResult, Status

DocumentFn = Callable[[str, ConvertOptions], DocumentResult]
PagesHook = Callable[[int], None]

# Set in a worker process (or during an in-process run) so report_pages can reach the parent.
_progress_sink: Callable[[int], None] | None = None


def report_pages(num_pages: int) -> None:
    """Called from inside `fn`: `num_pages` more pages are done. No-op outside a run."""
    if _progress_sink is not None and num_pages > 0:
        _progress_sink(num_pages)


def failure(source: str, error: str, backend: str | None = None) -> DocumentResult:
    """A failure result for `source` (used here and by callers for errors found before running);
    `backend` names the backend that could not convert it, when one was chosen."""
    result = DocumentResult(source_path=source, name=Path(source).stem, status=Status.FAILURE, error=error)
    if backend is not None:
        result.backend = backend
    return result


def run_documents(sources: list[str], fn: DocumentFn, opts: ConvertOptions,
                  on_pages: PagesHook | None = None, in_process: bool = False) -> Iterator[DocumentResult]:
    """Yield one DocumentResult per source as each finishes. `in_process=True` runs
    `fn` in this process, one document after another, with no time, memory or
    crash containment (for debugging and tests)."""
    if in_process:
        return _run_in_process(sources, fn, opts, on_pages)
    try:
        pickle.dumps(fn)
    except Exception as e:  # fail early with a clear message rather than inside every worker
        raise TypeError(f"fn must be a picklable top-level function: {e}") from e
    return _Pool(sources, fn, opts, on_pages).results()


def _run_in_process(sources, fn, opts, on_pages) -> Iterator[DocumentResult]:
    global _progress_sink
    for source in sources:
        counter = _Counter(on_pages)
        _progress_sink = counter
        try:
            result, _ = _call(fn, source, opts)
        finally:
            _progress_sink = None
        counter.finish(result)
        yield result


class _Counter:
    """Forwards page increments to on_pages and tops up at the end from len(result.pages)."""

    def __init__(self, on_pages: PagesHook | None):
        self.on_pages, self.num_reported = on_pages, 0

    def __call__(self, num_pages: int) -> None:
        self.num_reported += num_pages
        if self.on_pages:
            self.on_pages(num_pages)

    def finish(self, result: DocumentResult) -> None:
        rest = len(result.pages) - self.num_reported
        if rest > 0:
            self(rest)


def _call(fn: DocumentFn, source: str, opts: ConvertOptions) -> tuple[DocumentResult, bool]:
    """Runs fn; turns an exception into a failure result. Returns (result, ran_out_of_memory)."""
    try:
        result = fn(source, opts)
    except MemoryError:
        return failure(source, f"out of memory (limit {opts.max_memory_mb} MB)"), True
    except Exception as e:
        return failure(source, f"{type(e).__name__}: {e}"), False
    if not isinstance(result, DocumentResult):
        return failure(source, f"internal error: fn returned {type(result).__name__}, not DocumentResult"), False
    return result, False


# ----------------------------------------------------------------------------- worker side

def _worker_main(conn: Connection, fn: DocumentFn, opts: ConvertOptions) -> None:
    """Loop: receive (index, source), run fn, send ("done", index, result, is_retiring).
    None ends it. After a MemoryError the worker retires (the libraries' state is
    suspect and the heap stays large), and the parent starts a fresh one."""
    global _progress_sink
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's to handle
    if opts.max_memory_mb > 0:
        import resource

        limit_bytes = opts.max_memory_mb * 1024 * 1024
        resource.setrlimit(resource.RLIMIT_AS, (limit_bytes, limit_bytes))
    send_lock = threading.Lock()  # fn may report pages from a thread of its own

    def send(message) -> None:
        with send_lock:
            conn.send(message)

    _progress_sink = lambda n: send(("pages", n))  # noqa: E731
    while True:
        task = conn.recv()
        if task is None:
            return
        index, source = task
        result, is_retiring = _call(fn, source, opts)
        try:
            send(("done", index, result, is_retiring))
        except Exception:  # unpicklable, or too large to pickle under the memory limit
            reason = traceback.format_exc(limit=1).strip().splitlines()[-1]
            send(("done", index, failure(source, f"internal error: result could not be sent: {reason}"), True))
            is_retiring = True
        if is_retiring:
            return


# ----------------------------------------------------------------------------- parent side

@dataclass
class _Worker:
    process: mp.Process
    conn: Connection  # parent end of this worker's pipe
    index: int = -1  # position in sources of the task it runs; -1 = idle
    deadline_s: float = 0.0  # time.monotonic() after which the task is killed
    counter: _Counter | None = None  # progress of the running task


class _Pool:
    """Hand-rolled pool: one pipe per worker so that one worker can be killed
    and replaced without disturbing the others (ProcessPoolExecutor cannot)."""

    def __init__(self, sources, fn, opts, on_pages):
        self.sources, self.fn, self.opts, self.on_pages = list(sources), fn, opts, on_pages
        self.ctx = mp.get_context("spawn")
        self.next_index = 0  # next source to hand out
        self.workers: list[_Worker] = []

    def results(self) -> Iterator[DocumentResult]:
        try:
            for _ in range(min(self.opts.workers, len(self.sources))):
                self._start_worker()
            num_done = 0
            while num_done < len(self.sources):
                for result in self._step():
                    num_done += 1
                    yield result
        finally:
            self._shutdown()

    def _start_worker(self) -> None:
        parent_conn, child_conn = self.ctx.Pipe(duplex=True)
        process = self.ctx.Process(target=_worker_main, args=(child_conn, self.fn, self.opts),
                                   name="docpipe-worker", daemon=True)
        process.start()
        child_conn.close()  # so that the parent sees EOF when the child dies
        worker = _Worker(process, parent_conn)
        self.workers.append(worker)
        self._dispatch(worker)

    def _dispatch(self, worker: _Worker) -> None:
        """Gives the worker the next source, or stops it when none is left."""
        if self.next_index >= len(self.sources):
            self._stop(worker)
            return
        index = self.next_index
        try:
            worker.conn.send((index, self.sources[index]))
        except OSError:  # died while idle: the task never reached it, so give it to a fresh worker
            self._retire(worker)
            self._start_worker()
            return
        self.next_index += 1
        worker.index, worker.counter = index, _Counter(self.on_pages)
        limit_s = self.opts.timeout_s
        worker.deadline_s = time.monotonic() + limit_s if limit_s and limit_s > 0 else float("inf")

    def _step(self) -> list[DocumentResult]:
        """Waits for messages, deaths or the nearest deadline; returns finished documents."""
        busy = [w for w in self.workers if w.index >= 0]
        assert busy, "work remains but no worker is busy"
        nearest_s = min(w.deadline_s for w in busy)
        timeout_s = None if nearest_s == float("inf") else max(0.0, nearest_s - time.monotonic())
        ready = set(wait([w.conn for w in busy] + [w.process.sentinel for w in busy], timeout_s))
        finished = []
        for worker in busy:
            if worker.conn in ready:
                result = self._receive(worker)
                if result is not None:
                    finished.append(result)
            elif worker.process.sentinel in ready:
                finished.append(self._replace(worker, _death_reason(worker.process)))
            elif time.monotonic() >= worker.deadline_s:
                finished.append(self._replace(worker, f"timed out after {self.opts.timeout_s:g} s"))
        return finished

    def _receive(self, worker: _Worker) -> DocumentResult | None:
        try:
            message = worker.conn.recv()
        except (EOFError, OSError):  # died mid-message or before sending
            return self._replace(worker, _death_reason(worker.process))
        if message[0] == "pages":
            worker.counter(message[1])
            return None
        _, index, result, is_retiring = message
        assert index == worker.index, f"worker answered task {index}, expected {worker.index}"
        worker.counter.finish(result)
        worker.index = -1
        if is_retiring:
            self._retire(worker)  # it exits on its own; start a fresh one if work remains
            if self.next_index < len(self.sources):
                self._start_worker()
        else:
            self._dispatch(worker)
        return result

    def _replace(self, worker: _Worker, error: str) -> DocumentResult:
        """Kills the worker, fails its document, and starts a fresh worker if work remains."""
        result = failure(self.sources[worker.index], error)
        worker.counter.finish(result)
        worker.index = -1
        self._retire(worker)
        if self.next_index < len(self.sources):
            self._start_worker()
        return result

    def _retire(self, worker: _Worker) -> None:
        if worker.process.is_alive():
            worker.process.kill()
        worker.process.join(5)
        worker.conn.close()
        self.workers.remove(worker)

    def _stop(self, worker: _Worker) -> None:
        try:
            worker.conn.send(None)
        except OSError:
            pass  # already gone

    def _shutdown(self) -> None:
        """Normal end: idle workers got None and exit. Early end (consumer stopped
        iterating, Ctrl-C): kill whatever still runs."""
        for worker in list(self.workers):
            if worker.index < 0:
                worker.process.join(2)
            self._retire(worker)


def _death_reason(process: mp.Process) -> str:
    process.join(5)  # the pipe closes a moment before the exit status can be collected
    code = process.exitcode
    if code is not None and code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = "unknown signal"
        return f"worker crashed (signal {-code}: {name})"
    return f"worker crashed (exit code {code})"

