"""Run a snippet in a fresh interpreter and return the JSON it prints last (for what is process-wide,
such as the collector's frozen generation)."""
from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def run_fresh(code: str, **env_extra: str):
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", **env_extra}
    out = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], env=env, capture_output=True, text=True,
                         timeout=180, cwd=ROOT)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])
