"""On/off switches read from the environment (debugging and A/B runs).

A switch is on when its variable is set to anything but "", "0", "false" or
"no" (any case, surrounding spaces ignored). A number is an int, or `default`
when the variable is unset or blank; anything else is an error naming it.
"""
from __future__ import annotations

import os


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
