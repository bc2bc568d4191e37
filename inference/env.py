"""On/off switches read from the environment (debugging and A/B runs).

A switch is on when its variable is set to anything but "", "0", "false" or
"no" (any case, surrounding spaces ignored).
"""
from __future__ import annotations

import os


def env_flag(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() not in ("", "0", "false", "no")
