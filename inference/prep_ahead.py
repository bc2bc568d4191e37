"""Prompt preparation ahead of the step loop, for `LLM.generate`.

The processor (image patches, placeholder expansion, M-RoPE positions) cost
~3 ms of host time per 1036x1036 page when this was written (0.02 ms since the
patch rule and the layout memo: session 12). Run inline before the first step,
64 layout pages left the GPU idle for ~0.2 s; here a background thread
prepares requests in order while the engine runs the ones already admitted.

The thread runs only the host part (`Processor.host`: prompt ids, image
arrays, placeholder expansion, positions; no CUDA call); `get(i)` finishes
the request on the caller's thread (`Processor.finish`: upload, patches on
the device), so device work stays on the engine's thread and stream.

Lifecycle: `PrepAhead(processor, requests, threaded)` queues the first
AHEAD_REQUESTS requests on a one-thread PrepStage (prep_stage.py) when
threaded, and each get() queues the next, so at most AHEAD_REQUESTS prepared
requests wait on the host: a host prompt holds its image array (nothing extra
for a page whose size the patch rule keeps: a view of the image; ~26 MB of
fp32 patches for an image of a layout page's size that the checkpoint's
processor resizes, so up to ~3.3 GB), and a generate() call of thousands of pages must not hold them
all. `get(i)` returns request i's ProcessedPrompt (in order: i = 0, 1, ...;
waiting for it, re-raising the processor's error); `ready(i)` says whether it
is done; `close()` drops what has not started and joins the thread, so
nothing touches the processor after generate() returns. Not threaded, get(i)
prepares inline (the CPU path, where there is no device to overlap with).

The thread only runs requests that carry `prompt_token_ids`: the fast
tokenizer must not encode on one thread while the step thread decodes
finished outputs on another, so requests that need tokenizing are prepared
inline, on the caller's thread.
"""
from __future__ import annotations

from inference.prep_stage import PrepStage

AHEAD_REQUESTS = 128  # prepared (or being prepared) past the last one taken; > two steps' worth of small requests


class PrepAhead:
    def __init__(self, processor, requests: list[dict], threaded: bool):
        self._processor = processor
        self._requests = requests
        self._stage: PrepStage | None = None
        self._done: dict[int, object] = {}  # index -> Prepared, taken from the stage in order
        self._submitted = 0  # requests[:_submitted] went to the stage
        self._next = 0  # the index get() takes next
        if threaded and requests and all("prompt_token_ids" in r for r in requests):
            self._stage = PrepStage(processor.host, threads=1, name="prep")
            self._top_up(0)

    def _top_up(self, next_index: int) -> None:
        """Keep requests up to next_index + AHEAD_REQUESTS submitted."""
        end = min(len(self._requests), next_index + AHEAD_REQUESTS)
        while self._submitted < end:
            self._stage.submit(self._submitted, self._requests[self._submitted])
            self._submitted += 1

    @property
    def threaded(self) -> bool:
        return self._stage is not None

    def _collect(self, wait: bool) -> None:
        for item in self._stage.take(wait):
            self._done[item.key] = item

    def ready(self, i: int) -> bool:
        if self._stage is None:
            return True
        if i not in self._done:
            self._collect(wait=False)
        return i in self._done

    def get(self, i: int):
        if i != self._next:
            raise ValueError(f"PrepAhead.get({i}): requests are taken in order, {self._next} is next")
        self._next += 1
        if self._stage is None:
            return self._processor(self._requests[i])
        while i not in self._done:
            self._collect(wait=True)
        item = self._done.pop(i)
        self._top_up(i + 1)
        if item.error is not None:
            raise item.error
        return self._processor.finish(item.value)

    def close(self) -> None:
        if self._stage is not None:
            self._stage.close()
            self._stage = None
