"""Process entry points of the PD roles (spawn-safe, importable by name).

run_worker / run_router build the role, report where they listen through
`report` (a multiprocessing queue, or None for `docpipe serve`, which prints
one line `<role> <index> listening on <host:port>` and, with address_file,
writes the same facts as JSON there once the listener is up), then serve
until SIGTERM / SIGINT / Shutdown. SIGTERM becomes a normal exit, so
listeners close and shared-memory segments are unlinked. `token` overrides
the layout's (a cluster hands its children one shared token). A worker
given `env` sets it before anything touches CUDA (MPS pipe directory and SM
share from cluster.Cluster). A worker given `router` announces itself there (AddWorker) once it serves, so its
port may be ephemeral (0).
"""
from __future__ import annotations

import json
import logging
import os
import signal
import threading
import time

from inference.gc_pauses import freeze_startup_objects

log = logging.getLogger("inference.disagg.process")

ANNOUNCE_TIMEOUT_S = 60.0  # a worker retries joining its router this long (the router may start later)


def _prepare(num_threads: int | None) -> None:
    from inference.env import apply_switch_interval
    apply_switch_interval()  # a role's sender, landing and connection threads wait less on its engine thread
    if num_threads:
        import torch
        torch.set_num_threads(num_threads)  # roles share the host's cores
    logging.basicConfig(level=os.environ.get("DOCPIPE_LOG", "WARNING"),
                        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s")


def _on_signals(stop) -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop())


def write_address_file(path, info: dict) -> None:
    """Write info as JSON atomically: a reader polling the path never sees half a file."""
    tmp = f"{path}.{os.getpid()}.tmp"
    with open(tmp, "w") as f:
        json.dump(info, f)
    os.replace(tmp, path)


def _publish(info: dict, report, address_file) -> None:
    if report is not None:
        report.put(info)
        return
    if address_file:
        write_address_file(address_file, info)
    extra = f" (KV receiver {info['transfer_address']})" if info.get("transfer_address") else ""
    who = info["role"] if info["role"] == "router" else f"{info['role']} {info['index']}"
    print(f"{who} listening on {info['address']}{extra}", flush=True)


def announce(router: str, token: bytes, role: str, address: str, timeout_s: float = ANNOUNCE_TIMEOUT_S) -> None:
    """Tell the router at `router` that a `role` worker listens at `address`;
    returns once the router has connected to it. Retries while the router is
    not up yet. Must not run on the worker's loop thread: the router's Hello
    to the worker is answered there."""
    from inference.disagg import protocol as P
    from inference.disagg.client import RouterClient

    deadline = time.monotonic() + timeout_s
    while True:
        try:
            client = RouterClient(router, token)
            break
        except ConnectionRefusedError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)
    try:
        client.channel.send(P.AddWorker(role=role, address=address))
        reply = client.request(P.Hello(role="client"), timeout_s=timeout_s)  # answered after the AddWorker
    finally:
        client.close()
    if not isinstance(reply, P.Hello):
        raise ConnectionError(f"router {router} did not add the {role} worker at {address}: {reply}")


def _announce_in_background(router: str, token: bytes, role: str, address: str, on_failure) -> None:
    def run() -> None:
        try:
            announce(router, token, role, address)
            log.info("%s at %s joined router %s", role, address, router)
        except Exception as e:
            log.error("%s at %s could not join router %s: %s; stopping", role, address, router, e)
            on_failure()

    threading.Thread(target=run, name="announce", daemon=True).start()


def run_worker(role: str, model: str, layout_path, index: int = 0, engine_kw: dict | None = None,
               report=None, num_threads: int | None = None, token: str | None = None,
               router: str | None = None, address_file=None, env: dict | None = None) -> None:
    os.environ.update(env or {})  # MPS settings: must be in place before CUDA initialises
    _prepare(num_threads)
    from inference.layouts import Layout, load_layout

    layout = layout_path if isinstance(layout_path, Layout) else load_layout(layout_path)
    layout.token = token or layout.token  # the cluster's token wins over the file's
    if role == "prefill":
        from inference.disagg.prefill_worker import PrefillWorker as cls
    elif role == "decode":
        from inference.disagg.decode_worker import DecodeWorker as cls
    else:
        raise ValueError(f"unknown worker role {role!r}")
    try:
        worker = cls(model, layout, index, **(engine_kw or {}))
    except Exception as e:
        if report is not None:
            report.put({"role": role, "index": index, "error": f"{type(e).__name__}: {e}"})
        raise
    _on_signals(worker.stop)
    info = {"role": role, "index": index, "address": worker.address, "pid": os.getpid(),
            "transfer_address": getattr(worker, "transfer_address", "")}
    _publish(info, report, address_file)
    if router:
        _announce_in_background(router, worker.token, role, worker.address, worker.stop)
    freeze_startup_objects()  # one worker for the process's life
    worker.serve()


def run_router(layout_path, workers: list[tuple[str, str]], report=None, token: str | None = None,
               port: int | None = None, address_file=None, **router_kw) -> None:
    """workers: (role, control address) of each worker to connect to now;
    others may join later (AddWorker). port: None = the layout's, 0 = any free."""
    _prepare(None)
    from inference.disagg.worker import resolve_token
    from inference.layouts import Layout, load_layout
    from inference.router.server import RouterServer

    layout = layout_path if isinstance(layout_path, Layout) else load_layout(layout_path)
    layout.token = token or layout.token
    server = RouterServer(layout, resolve_token(layout), port=port, **router_kw)
    _on_signals(server.stop)
    try:
        for role, address in workers:
            server.add_worker(role, address)
    except Exception as e:
        if report is not None:
            report.put({"role": "router", "error": f"{type(e).__name__}: {e}"})
        raise
    _publish({"role": "router", "index": 0, "address": server.address, "pid": os.getpid()}, report, address_file)
    server.serve()
