"""Cluster: run a layout's workers and router as local processes.

    with Cluster("dummy:tiny", "local-cpu-1p1d") as cluster:
        client = cluster.client()
        ...

Lifecycle: start() first sets up GPU sharing (mps.GpuSharing: an MPS
control daemon for the session when the layout asks for one, or a logged
fallback), then spawns (spawn context) the router and every worker of the
layout (count per spec) at once -> waits for each to report its control
address -> tells the router where the workers are (AddWorker; it connects). A supervisor
thread then watches the workers: one that dies is restarted (restart=True)
and announced to the router with AddWorker; the router has already retried
its requests. stop() (also on leaving the `with`) sends SIGTERM to every
process, waits, SIGKILLs what is left, then stops the MPS daemon it
started. Each worker gets its role's MPS environment (pipe directory, SM
percentage) before CUDA initialises. The shared token is the layout's
or, when it names none, a fresh random one handed to the children.
"""
from __future__ import annotations

import logging
import multiprocessing as mp
import os
import queue
import secrets
import signal
import threading
import time

from inference.disagg import protocol as P
from inference.disagg.client import RouterClient
from inference.disagg.mps import GpuSharing
from inference.disagg.process import run_router, run_worker
from inference.layouts import Layout, load_layout

log = logging.getLogger("inference.disagg.cluster")


class Cluster:
    def __init__(self, model: str, layout: str | os.PathLike | Layout, engine_kw: dict | None = None,
                 router_kw: dict | None = None, num_threads: int | None = 1, restart: bool = True,
                 start_timeout_s: float = 180.0):
        self.layout = layout if isinstance(layout, Layout) else load_layout(layout)
        self.model, self.engine_kw, self.router_kw = model, dict(engine_kw or {}), dict(router_kw or {})
        self.num_threads, self.restart, self.start_timeout_s = num_threads, restart, start_timeout_s
        self.token = self.layout.auth_token() or secrets.token_hex(16)
        self._ctx = mp.get_context("spawn")
        self._reports = self._ctx.Queue()
        self.procs: dict[tuple[str, int], mp.Process] = {}  # (role, index) -> worker process
        self.info: dict[tuple[str, int], dict] = {}  # (role, index) -> its report (address, pid)
        self.router_proc: mp.Process | None = None
        self.router_address = ""
        self.restarts = 0  # workers restarted by the supervisor
        self._stop = threading.Event()
        self._supervisor: threading.Thread | None = None
        self.gpu_sharing = GpuSharing(self.layout)

    # start / stop ---------------------------------------------------------------------
    def _spawn_worker(self, role: str, index: int) -> None:
        p = self._ctx.Process(target=run_worker, name=f"docpipe-{role}-{index}", daemon=True,
                              args=(role, self.model, self.layout, index, self.engine_kw, self._reports,
                                    self.num_threads, self.token),
                              kwargs={"env": self.gpu_sharing.env_for(role)})
        p.start()
        self.procs[(role, index)] = p

    def _await_reports(self, keys: set, what: str) -> None:
        deadline = time.monotonic() + self.start_timeout_s
        while keys - set(self.info):
            dead = [k for k in keys - set(self.info) if k in self.procs and not self.procs[k].is_alive()]
            if dead or (("router", 0) in keys - set(self.info) and not self.router_proc.is_alive()):
                raise RuntimeError(f"{what}: {dead or 'router'} exited during start (see its log above)")
            if time.monotonic() > deadline:
                raise TimeoutError(f"{what} did not start within {self.start_timeout_s} s")
            try:
                rep = self._reports.get(timeout=0.5)
            except queue.Empty:
                continue
            if "error" in rep:
                raise RuntimeError(f"{rep['role']} {rep.get('index', '')} failed to start: {rep['error']}")
            self.info[(rep["role"], rep.get("index", 0))] = rep

    def start(self) -> "Cluster":
        try:
            self.gpu_sharing.start()
            keys = {(w.role, i) for w in self.layout.workers for i in range(w.count)}
            # the router starts alongside the workers (its imports overlap theirs); workers join it by AddWorker
            self.router_proc = self._ctx.Process(target=run_router, name="docpipe-router", daemon=True,
                                                 args=(self.layout, [], self._reports, self.token),
                                                 kwargs=self.router_kw)
            self.router_proc.start()
            for role, index in sorted(keys):
                self._spawn_worker(role, index)
            self._await_reports(keys | {("router", 0)}, "workers and router")
            self.router_address = self.info[("router", 0)]["address"]
            self._announce(sorted(keys))
        except BaseException:
            self.stop()
            raise
        self._supervisor = threading.Thread(target=self._supervise, name="pd-supervisor", daemon=True)
        self._supervisor.start()
        return self

    def _announce(self, keys: list[tuple[str, int]]) -> None:
        """Tell the router where these workers listen; returns once it has them."""
        client = self.client()
        try:
            for role, index in keys:
                client.channel.send(P.AddWorker(role=role, address=self.info[(role, index)]["address"]))
            reply = client.request(P.Hello(role="client"), timeout_s=self.start_timeout_s)  # ordered after the AddWorkers
            if not isinstance(reply, P.Hello):
                raise RuntimeError(f"router could not add a worker: {reply}")
        finally:
            client.close()

    def _supervise(self) -> None:
        while not self._stop.wait(0.1):
            for (role, index), p in list(self.procs.items()):
                if p.is_alive() or self._stop.is_set() or not self.restart:
                    continue
                log.warning("%s %d exited (code %s); restarting it", role, index, p.exitcode)
                self.info.pop((role, index), None)
                try:
                    self._spawn_worker(role, index)
                    self._await_reports({(role, index)}, f"{role} {index}")
                    self._announce([(role, index)])
                    self.restarts += 1
                except Exception:
                    if not self._stop.is_set():
                        log.exception("restarting %s %d failed", role, index)

    def stop(self) -> None:
        self._stop.set()
        if self._supervisor is not None and self._supervisor is not threading.current_thread():
            self._supervisor.join(timeout=10)
        # router first (it would log every worker it sees go as lost), then senders before their
        # receivers (a prefill worker logs a decode worker that closed under it)
        groups = [[self.router_proc] if self.router_proc else []]
        groups += [[p for (r, _), p in self.procs.items() if r == role] for role in ("prefill", "decode")]
        groups.append([p for (r, _), p in self.procs.items() if r not in ("prefill", "decode")])
        for group in groups:
            for p in group:
                if p.is_alive():
                    p.terminate()
            for p in group:
                p.join(timeout=10)
                if p.is_alive():
                    p.kill()
                    p.join(timeout=5)
        self.gpu_sharing.stop()  # after its clients are gone

    def __enter__(self) -> "Cluster":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()

    # use ----------------------------------------------------------------------------------
    def client(self) -> RouterClient:
        return RouterClient(self.router_address, self.token.encode())

    def pid(self, role: str, index: int = 0) -> int:
        return self.procs[(role, index)].pid

    def kill(self, role: str, index: int = 0) -> None:
        """Fault injection: SIGKILL a worker (the supervisor restarts it)."""
        os.kill(self.pid(role, index), signal.SIGKILL)
