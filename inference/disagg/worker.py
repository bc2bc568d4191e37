"""What prefill and decode workers share: engine from the layout, control
server, one loop thread that owns the engine.

Lifecycle: build the engine (its WorkerSpec: device, dtype, block size, op
backend) -> open the control Server (the layout's host for this index, port +
index, or any free port) -> `serve()` loops until stop(): drain the inbox
(messages put there by connection threads; only this thread touches the
engine) -> `poll()` (role-specific: transfers, leases) -> one engine step when
there is work -> role-specific handling of finished outputs. A message that
fails to apply gets an Error (or a typed failure) reply; the loop goes on.
Connection threads hand each message to `receive()` first: a role may
handle there what touches no engine state (or prepare the host-side part of a
request), so it does not wait behind a long engine step; everything else
goes to the inbox in arrival order.
"""
from __future__ import annotations

import logging
import os
import queue
import threading
import time

from inference.config import EngineConfig
from inference.disagg.step_log import StepLog
from inference.disagg import protocol as P
from inference.disagg.channel import Channel, Server
from inference.layouts import Layout, WorkerSpec

log = logging.getLogger("inference.disagg.worker")

LOAD_REPORT_S = 0.1  # how often a worker tells the router its load
OWNERS_KEPT = 1 << 16  # reply routes remembered at most; the oldest go first, so long runs stay flat


def remember_owner(owners: dict, request_id: str, channel, limit: int = OWNERS_KEPT) -> None:
    """Replies about `request_id` go to `channel` (the latest asker: a retry may come on another
    connection). Past `limit` routes the oldest is dropped: it belongs to a request long answered,
    and dropping it here, not when a request ends, leaves no window in which a late message about
    a request that just ended (a TransferRequest after its lease) finds no route for its reply."""
    owners.pop(request_id, None)  # re-asked: now the newest
    owners[request_id] = channel
    if len(owners) > limit:
        del owners[next(iter(owners))]


ROLE_SETTINGS = {  # what an engine of a role leaves out at start (others, e.g. "monolithic": nothing)
    "decode": {"precapture_graphs": False},  # ~2.6 GiB of encoder/prefill graph pools it would seldom use
    "prefill": {"precapture_decode": False},  # it hands every request over after its first token
}


def engine_config(model: str, spec: WorkerSpec, role: str | None = None, **overrides) -> EngineConfig:
    """The EngineConfig of `spec`'s settings, for an engine of `role` (default: spec.role)."""
    kw = dict(model=model, dtype=spec.dtype, device=spec.device, kv_block_size=spec.kv_block_size,
              max_num_seqs=spec.max_num_seqs, max_num_batched_tokens=spec.max_num_batched_tokens,
              ops_backend=spec.ops_backend, mode=spec.mode, gpu_memory_utilization=spec.gpu_memory_fraction)
    kw.update(ROLE_SETTINGS.get(role or spec.role, {}))
    kw.update(overrides)
    return EngineConfig(**kw)


def resolve_token(layout: Layout) -> bytes:
    token = layout.auth_token()
    if not token:
        raise RuntimeError(f"layout {layout.name}: no shared token; set ${layout.token_env} (or `token` in the layout)")
    return token.encode()


def bind_address(spec: WorkerSpec, index: int) -> tuple[str, int]:
    host = spec.hosts[index % len(spec.hosts)]
    return host, (spec.port + index if spec.port else 0)


class Worker:
    role = "base"

    def __init__(self, model: str, layout: Layout, index: int = 0, **engine_kw):
        from inference.engine.engine import LLMEngine

        self.layout, self.index = layout, index
        self.spec = layout.role(self.role)
        self.token = resolve_token(layout)
        self.engine = LLMEngine(engine_config(model, self.spec, **engine_kw))
        self.inbox: queue.Queue = queue.Queue()
        self.owner: dict[str, Channel] = {}  # request id -> channel that asked (replies go there)
        self._owner_lock = threading.Lock()  # connection threads and the loop both add routes
        self.routers: set[Channel] = set()  # channels that said Hello(role="router"): load reports
        self._stop = threading.Event()
        self._last_load_s = 0.0
        self._step_s = 0.0  # EWMA of engine step time
        self.steps = StepLog()
        host, port = bind_address(self.spec, index)
        self.server = Server(host, port, self.token, self._receive_safely,
                             on_close=lambda ch: self.inbox.put((ch, None)))

    @property
    def address(self) -> str:
        return self.server.address

    def hello(self) -> P.Hello:
        return P.Hello(role=self.role, index=self.index, block_size=self.spec.kv_block_size, pid=os.getpid(),
                       num_free_blocks=self.engine.block_manager.num_free_blocks)

    # role hooks ---------------------------------------------------------------
    def receive(self, channel: Channel, msg) -> None:
        """On the connection's thread: handle `msg` here when it needs no engine
        state, else queue it for the loop thread (the default)."""
        self.inbox.put((channel, msg))

    def _receive_safely(self, channel: Channel, msg) -> None:
        try:
            self.receive(channel, msg)
        except Exception as e:  # as on the loop thread: one bad message never ends the connection
            self._failed(channel, msg, e)

    def _failed(self, channel: Channel, msg, e: Exception) -> None:
        log.exception("%s %d: %s failed", self.role, self.index, type(msg).__name__)
        channel.reply_error(f"{type(msg).__name__} failed: {type(e).__name__}: {e}", getattr(msg, "request_id", ""))

    def handle(self, channel: Channel, msg) -> None:
        raise NotImplementedError

    def poll(self) -> None:
        pass

    def on_outputs(self, outputs: list) -> None:
        raise NotImplementedError

    def load(self) -> P.Load:
        raise NotImplementedError

    def close(self) -> None:
        self.server.close()

    # loop ------------------------------------------------------------------------------
    def remember(self, request_id: str, channel: Channel) -> None:
        with self._owner_lock:
            remember_owner(self.owner, request_id, channel)

    def reply(self, request_id: str, msg) -> None:
        channel = self.owner.get(request_id)
        if channel is None or channel.closed:
            log.info("%s %d: nobody to tell about %s", self.role, self.index, request_id)
            return
        try:
            channel.send(msg)
        except OSError as e:
            log.info("%s %d: reply for %s lost: %s", self.role, self.index, request_id, e)

    def _dispatch(self, channel: Channel, msg) -> None:
        if msg is None:  # connection ended
            self.routers.discard(channel)
            return
        if isinstance(msg, P.Hello):
            if msg.role == "router":
                self.routers.add(channel)
            channel.send(self.hello())
        elif isinstance(msg, P.Shutdown):
            self.stop()
        else:
            try:
                self.handle(channel, msg)
            except Exception as e:  # one bad request never stops the worker
                self._failed(channel, msg, e)

    def _report_load(self) -> None:
        now = time.monotonic()
        if not self.routers or now - self._last_load_s < LOAD_REPORT_S:
            return
        self._last_load_s = now
        msg = self.load()
        for ch in list(self.routers):
            try:
                ch.send(msg)
            except OSError:
                self.routers.discard(ch)

    def serve(self) -> None:
        while not self._stop.is_set():
            idle = not self.engine.has_unfinished_requests()
            try:
                item = self.inbox.get(timeout=0.005 if idle else 0)
                while True:
                    self._dispatch(*item)
                    item = self.inbox.get_nowait()
            except queue.Empty:
                pass
            self.poll()
            if self.engine.has_unfinished_requests():
                self.run_step()
            self._report_load()
        self.close()

    def run_step(self) -> None:
        """One engine step, timed (load signal, step log), its outputs handed on."""
        t0 = time.perf_counter()
        outputs = self.engine.step()
        seconds = time.perf_counter() - t0
        self._step_s = 0.8 * self._step_s + 0.2 * seconds
        self.steps.add(seconds)
        self.on_outputs(outputs)

    def stop(self) -> None:
        self._stop.set()
