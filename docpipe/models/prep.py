"""Preparation threads of docpipe's engine runner: how many (`prep_threads`,
$DOCPIPE_PREP_THREADS); the ordered stage itself is inference/prep_stage.py."""
from __future__ import annotations

import os

PREP_THREADS_ENV = "DOCPIPE_PREP_THREADS"  # 0: prepare inline on the step thread (debugging, A/B)


def prep_threads(override: int | None = None) -> int:
    """Preparation threads: `override`, else $DOCPIPE_PREP_THREADS, else 0 (inline).
    On the H200 (bench pipeline, 128 pages, one call, session3/c6_*.json) one
    thread (with the block-building thread it implies) ran 5.16 pages/s against
    6.79 inline, and the step thread's launch time per decode step rose from 4.6
    to 6.0 ms: the preparation is Python-heavy and holds the GIL the step thread
    needs for every launch. The threaded run also came first on a fresh machine
    (some compilation inside it), so the size of the loss is uncertain; its sign
    agrees with the launch times. Kept for A/B runs and for faster hosts."""
    if override is not None:
        return override
    env = os.environ.get(PREP_THREADS_ENV, "").strip()
    if env:
        if not env.isdigit():
            raise ValueError(f"${PREP_THREADS_ENV} must be a number of threads (0 = inline), got {env!r}")
        return int(env)
    return 0
