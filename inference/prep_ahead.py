"""Prompt preparation ahead of the step loop, for `LLM.generate`.

The processor (image patches, placeholder expansion, M-RoPE positions) costs
~3 ms of host time per 1036x1036 page. Run inline before the first step, 64
layout pages leave the GPU idle for ~0.2 s; here a background thread
prepares requests in order while the engine runs the ones already admitted.

The thread runs only the host part (`Processor.host`: prompt ids, image
arrays, placeholder expansion, positions; no CUDA call); `get(i)` finishes
the request on the caller's thread (`Processor.finish`: upload, patches on
the device), so device work stays on the engine's thread and stream.

Lifecycle: `PrepAhead(processor, requests, threaded)` starts the thread at
once (when threaded); `get(i)` returns request i's ProcessedPrompt (waiting
for it, re-raising the processor's error); `ready(i)` says whether it is
done; `close()` cancels what has not started and joins the thread, so
nothing touches the processor after generate() returns. Not threaded, get(i)
prepares inline (the CPU path, where there is no device to overlap with).

The thread only runs requests that carry `prompt_token_ids`: the fast
tokenizer must not encode on one thread while the step thread decodes
finished outputs on another, so requests that need tokenizing are prepared
inline, on the caller's thread.
"""
from __future__ import annotations

from concurrent.futures import Future, ThreadPoolExecutor


class PrepAhead:
    def __init__(self, processor, requests: list[dict], threaded: bool):
        self._processor = processor
        self._requests = requests
        self._pool: ThreadPoolExecutor | None = None
        self._futures: list[Future] | None = None
        if threaded and requests and all("prompt_token_ids" in r for r in requests):
            self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="prep")
            self._futures = [self._pool.submit(processor.host, r) for r in requests]

    @property
    def threaded(self) -> bool:
        return self._futures is not None

    def ready(self, i: int) -> bool:
        return self._futures is None or self._futures[i].done()

    def get(self, i: int):
        if self._futures is None:
            return self._processor(self._requests[i])
        return self._processor.finish(self._futures[i].result())

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
