"""Process entry points of the PD roles (spawn-safe, importable by name).

run_worker / run_router build the role, report where they listen through
`report` (a multiprocessing queue, or None for `docpipe serve`, which prints
it), then serve until SIGTERM / SIGINT / Shutdown. SIGTERM becomes a normal
exit, so listeners close and shared-memory segments are unlinked. `token`
overrides the layout's (a cluster hands its children one shared token).
"""
from __future__ import annotations

import logging
import os
import signal
import threading


def _prepare(num_threads: int | None) -> None:
    if num_threads:
        import torch
        torch.set_num_threads(num_threads)  # roles share the host's cores
    logging.basicConfig(level=os.environ.get("DOCPIPE_LOG", "WARNING"),
                        format=f"%(asctime)s {os.getpid()} %(name)s %(levelname)s %(message)s")


def _on_signals(stop) -> None:
    if threading.current_thread() is threading.main_thread():
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, lambda *_: stop())


def run_worker(role: str, model: str, layout_path, index: int = 0, engine_kw: dict | None = None,
               report=None, num_threads: int | None = None, token: str | None = None) -> None:
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
    if report is not None:
        report.put(info)
    else:
        print(f"{role} {index} listening on {worker.address}", flush=True)
    worker.serve()


def run_router(layout_path, workers: list[tuple[str, str]], report=None, token: str | None = None,
               port: int | None = None, **router_kw) -> None:
    """workers: (role, control address) of each worker to connect to."""
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
    if report is not None:
        report.put({"role": "router", "address": server.address, "pid": os.getpid()})
    else:
        print(f"router listening on {server.address}", flush=True)
    server.serve()
