"""`docpipe serve` with ephemeral ports, as separate OS processes: the router
and both workers bind port 0, each writes its bound address to its
--address-file, the workers join the router named by --router, and a client
that only read the router's file gets a request served."""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from inference.disagg.client import RouterClient
from inference.sampling import SamplingParams

TOKEN = "test-token-serve"
ROOT = Path(__file__).resolve().parents[3]


def _serve(role: str, address_file: Path, *extra: str) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "docpipe.cli", "serve", "--role", role, "--layout", "local-cpu-1p1d",
           "--port", "0", "--address-file", str(address_file), *extra]
    env = {**os.environ, "DOCPIPE_TOKEN": TOKEN}
    return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait_file(path: Path, procs: list, timeout_s: float = 120) -> dict:
    deadline = time.monotonic() + timeout_s
    while not path.exists():
        for p in procs:
            assert p.poll() is None, f"{p.args[5]} exited: {p.stdout.read()}"
        assert time.monotonic() < deadline, f"{path.name} not written"
        time.sleep(0.1)
    return json.loads(path.read_text())


def test_roles_on_ephemeral_ports_find_each_other(tmp_path):
    procs = [_serve("router", tmp_path / "router.json")]
    try:
        router = _wait_file(tmp_path / "router.json", procs)
        assert router["role"] == "router" and not router["address"].endswith(":0")
        worker_kw = ("--router", router["address"], "--model", "dummy:tiny", "--threads", "1",
                     "--num-kv-blocks", "32", "--max-model-len", "128")
        for role in ("prefill", "decode"):
            procs.append(_serve(role, tmp_path / f"{role}.json", *worker_kw))
        infos = {role: _wait_file(tmp_path / f"{role}.json", procs) for role in ("prefill", "decode")}
        assert infos["decode"]["transfer_address"] and infos["prefill"]["address"] != infos["decode"]["address"]

        client = RouterClient(router["address"], TOKEN.encode())
        deadline = time.monotonic() + 60
        while len(json.loads(client.metrics())["workers"]) < 2:  # both have joined
            assert time.monotonic() < deadline, "workers did not join the router"
            time.sleep(0.1)
        client.submit("r", {"prompt_token_ids": [5, 6, 7]}, SamplingParams(temperature=0.0, max_tokens=4, ignore_eos=True))
        result = client.wait(["r"], timeout_s=60)["r"]
        assert len(result.token_ids) == 4 and result.finish_reason == "length"
        client.close()
    finally:
        for p in procs:
            p.send_signal(signal.SIGTERM)
        for p in procs:
            try:
                p.wait(timeout=15)
            except subprocess.TimeoutExpired:
                p.kill()
    out = procs[0].stdout.read()
    assert f"router listening on {router['address']}" in out
