"""On/off switches read from the environment (debugging and A/B runs).

A switch is on when its variable is set to anything but "", "0", "false" or
"no" (any case, surrounding spaces ignored). A number is an int, or `default`
when the variable is unset or blank; anything else is an error naming it.
"""
from __future__ import annotations

import os
import sys


def env_flag(name: str, default: bool = False) -> bool:
    """On unless the variable says 0/false/no/off; unset or empty: `default`."""
    text = os.environ.get(name, "").strip().lower()
    return default if not text else text not in ("0", "false", "no", "off")


def env_int(name: str, default: int) -> int:
    text = os.environ.get(name, "").strip()
    try:
        return int(text) if text else default
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {text!r}") from None


SWITCH_INTERVAL_ENV = "DOCPIPE_SWITCH_INTERVAL_MS"
SWITCH_INTERVAL_MS = 0.5


def set_switch_interval() -> float:
    """For processes docpipe owns (its CLI, the PD role processes): how long a thread holding the GIL
    keeps it while another waits. CPython's 5 ms can hold up the threads beside an engine thread
    busy in Python (KV sender and landing threads, reply and upload threads) by up to 5 ms at each of
    their steps; here 0.5 ms (one A/B on the H200 in session 8, PD TPOT, showed no difference beyond
    run-to-run noise). DOCPIPE_SWITCH_INTERVAL_MS overrides (5 = CPython's default). Returns the
    interval set, in seconds; raises ValueError naming the variable for a bad value."""
    text = os.environ.get(SWITCH_INTERVAL_ENV, "").strip()
    try:
        ms = float(text) if text else SWITCH_INTERVAL_MS
    except ValueError:
        raise ValueError(f"{SWITCH_INTERVAL_ENV} must be a number of milliseconds, got {text!r}") from None
    if not ms > 0:
        raise ValueError(f"{SWITCH_INTERVAL_ENV} must be > 0, got {text!r}")
    sys.setswitchinterval(ms / 1000)
    return ms / 1000


def apply_switch_interval() -> None:
    """set_switch_interval() for a process starting up: a bad variable is reported on stderr and
    CPython's interval kept (it must not stop a command or a worker)."""
    try:
        set_switch_interval()
    except ValueError as e:
        print(f"warning: {e}; keeping Python's switch interval", file=sys.stderr)
