"""Capture a CUDA graph in the middle of a run without stalling it.

`torch.cuda.graph(...)` (the context manager) starts every capture with
torch.cuda.synchronize(), empty_cache() and the host allocator's
empty_cache(): a device-wide wait, every cached device block handed back to
the driver (one cudaFree each, and each cudaFree synchronises the device)
and the cached pinned host blocks freed too. The engine captures lazily, a
graph per new decode bucket or sampler shape while documents are being
converted, so each of those captures stalled the step loop and made the next
steps allocate their activations again with cudaMalloc (a 128-page pipeline
run counted 17 such empties and ~300 cudaFree with the captured sampler on,
session 5). Here the capture is begun and ended directly on a side stream
that first waits for the caller's stream, which is all the capture needs.

Memory: graphs share `pool` (a handle from an earlier graph's pool(), or
None for a new private pool); the caller keeps the handle for the next one.
DOCPIPE_TORCH_GRAPH_CAPTURE=1 captures through torch.cuda.graph() instead
(A/B runs, debugging).
Engine start (precapture): the bucketed graph sets (vision encoder, LM
prefill) capture every bucket at once, largest first, so no step of a run
pays a capture (a new bucket cost a 22-28 ms device gap mid-run on the H200)
and the shared pool is sized by the largest bucket before the smaller graphs
reuse it. DOCPIPE_GRAPH_PRECAPTURE=0 leaves them to capture lazily, at a
bucket's first use (which stays the fallback for a bucket still missing).
Errors: capture_error_mode="thread_local", so other threads (image uploads,
KV landing) may keep using CUDA while a capture runs; a failed capture
raises and leaves the stream usable (capture_end is always called).
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterable

import torch

from inference.env import env_flag
from inference.streams import side_stream

log = logging.getLogger(__name__)
TORCH_CAPTURE_ENV = "DOCPIPE_TORCH_GRAPH_CAPTURE"
PRECAPTURE_ENV = "DOCPIPE_GRAPH_PRECAPTURE"


def capture(graph: torch.cuda.CUDAGraph, fn: Callable[[], None], device: torch.device, pool=None):
    """Run fn() once on the warm-up stream (lazy inits, autotuning and kernel builds stay out of the
    graph), then record its device work into `graph`; returns the graph's memory pool handle."""
    warm = side_stream(device, "graph-warmup")
    warm.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(warm):
        fn()
    torch.cuda.current_stream(device).wait_stream(warm)
    if env_flag(TORCH_CAPTURE_ENV):
        with torch.cuda.graph(graph, pool=pool, capture_error_mode="thread_local"):
            fn()
        return graph.pool()
    stream = side_stream(device, "graph-capture")  # one stream for every capture (streams.py)
    stream.wait_stream(torch.cuda.current_stream(device))
    with torch.cuda.stream(stream):
        graph.capture_begin(pool=pool, capture_error_mode="thread_local")
        try:
            fn()
        finally:
            graph.capture_end()
    torch.cuda.current_stream(device).wait_stream(stream)
    return graph.pool()


def stepped_sizes(limit: int, steps: list[tuple[int, int]]) -> list[int]:
    """Bucket sizes up to `limit` (the last one is `limit`): each (below, step) pair steps by
    `step` while the size is below `below`; the last pair's step goes on to the limit."""
    sizes, size = [], 0
    while size < limit:
        size += next((step for below, step in steps if size < below), steps[-1][1])
        sizes.append(min(size, limit))
    return sizes


def capture_into(owner, key, fn: Callable[[], None], device: torch.device, what: str, log) -> bool:
    """capture() fn into a new graph stored as owner.graphs[key], in owner.pool (updated). A failed
    capture is logged naming `what` and sets owner.enabled = False (that work runs eagerly from then
    on); returns whether the graph is there. `owner`: a graph set (vision, prefill, sampler graphs)."""
    graph = torch.cuda.CUDAGraph()
    if not owner.graphs:  # a pool dies with its last graph (an owner may drop graphs): capturing into it asserts
        owner.pool = None
    try:
        owner.pool = capture(graph, fn, device, owner.pool)
    except Exception as exc:  # noqa: BLE001 - any capture failure means: run eagerly
        log.warning("%s: graph capture failed, running eagerly from now on: %s", what, exc)
        owner.enabled = False
        return False
    owner.graphs[key] = graph
    return True


def run_bucket(owner, bucket, forward: Callable[[], None], capture_one: Callable[[object], bool]) -> bool:
    """The bucket's work over the owner's static buffers (already filled): forward() itself when
    owner.capture is off (the CPU path), else the bucket's graph replayed, captured by
    capture_one(bucket) at its first use if engine start did not; False: that capture failed
    (the caller runs eagerly). `owner`: a bucketed graph set (vision, prefill graphs)."""
    if not owner.capture:
        forward()
        return True
    if bucket not in owner.graphs and not capture_one(bucket):
        return False
    owner.graphs[bucket].replay()
    return True


def capture_buckets(owner, buckets: Iterable, capture_one: Callable[[object], bool]) -> int:
    """capture_one(bucket) for each of `buckets` not in owner.graphs, largest first: the first
    capture sizes the shared pool and the smaller graphs reuse its blocks (smallest first, the pool
    would grow again at each larger bucket). Stops at the first failure (capture_one False);
    returns the graphs captured. owner.graphs is read at each bucket (a capture may replace it)."""
    count = 0
    for bucket in sorted(buckets, reverse=True):
        if bucket in owner.graphs:
            continue
        if not capture_one(bucket):
            break
        count += 1
    return count


def precapture_requested() -> bool:
    """Whether engine start captures graph sets (DOCPIPE_GRAPH_PRECAPTURE, on by default)."""
    return env_flag(PRECAPTURE_ENV, default=True)


def precapture(graph_sets: Iterable) -> int:
    """Engine start: capture_all() on each graph set (None: that kind is off), unless
    DOCPIPE_GRAPH_PRECAPTURE=0; logs one INFO line with the count and the seconds taken, the
    warm-up calls' device work included. Returns the graphs captured."""
    sets = [g for g in graph_sets if g is not None]
    if not sets or not precapture_requested():
        return 0
    start = time.perf_counter()
    # no autograd (weights need no grad either); not inference_mode: buffers made here (vision's)
    # would become inference tensors, which nothing may write in place outside that mode
    with torch.no_grad():
        counts = {type(g).__name__: g.capture_all() for g in sets}
    total = sum(counts.values())
    if total and torch.cuda.is_available():
        torch.cuda.synchronize()
    log.info("captured %d CUDA graphs at start (%s) in %.1f s", total,
             ", ".join(f"{name} {n}" for name, n in counts.items()), time.perf_counter() - start)
    return total
