"""Router process: sockets and threads around the Router state machine.

One control Server for clients (Submit, MetricsRequest, AddWorker, Shutdown),
one outgoing authenticated connection per worker (Hello exchange, then a
reader thread). Every connection thread only puts events on one queue; the
loop thread owns the Router: event -> Router method, and tick() every
TICK_S for transfer deadlines and SLO checks. A worker connection that ends
is a lost worker (its requests are retried); a client connection that ends
aborts that client's requests (Router.client_gone). A worker that does not
answer the router's Hello within hello_timeout_s is logged and its
connection closed, so a silent peer cannot hold the router.
"""
from __future__ import annotations

import logging
import queue
import threading

from inference.disagg import protocol as P
from inference.disagg.channel import Channel, Server, connect, read_loop
from inference.layouts import Layout
from inference.router.policy import WorkerState
from inference.router.router import Router

log = logging.getLogger("inference.router")

TICK_S = 0.02  # deadline / SLO check period


class RouterServer:
    def __init__(self, layout: Layout, token: bytes, host: str | None = None, port: int | None = None,
                 transfer_timeout_s: float = 30.0, slo_policy: str = "defer", max_retries: int = 3,
                 hello_timeout_s: float = 10.0):
        self.layout, self.token, self.hello_timeout_s = layout, token, hello_timeout_s
        self.events: queue.Queue = queue.Queue()
        self.router = Router(layout.slo, self._send, transfer_timeout_s=transfer_timeout_s,
                             max_retries=max_retries, slo_policy=slo_policy)
        self.server = Server(host or layout.router_host, layout.router_port if port is None else port, token,
                             lambda ch, m: self.events.put(("client", ch, m)),
                             on_close=lambda ch: self.events.put(("client_gone", ch, None)))
        self._stop = threading.Event()

    @property
    def address(self) -> str:
        return self.server.address

    def _send(self, channel: Channel, msg) -> None:
        try:
            channel.send(msg)
        except OSError as e:  # a lost worker shows up through its reader; a lost client just misses results
            log.info("send to %s failed: %s", channel.peer, e)

    def add_worker(self, role: str, address: str) -> str:
        """Connect to a worker, exchange Hello, start its reader. Returns its name."""
        spec = self.layout.role(role)
        channel = connect(address, self.token, self.hello_timeout_s)
        try:
            channel.sock.settimeout(self.hello_timeout_s)  # a peer that never says Hello cannot hold the router
            channel.send(P.Hello(role="router"))
            try:
                hello = channel.recv()
            except TimeoutError:
                log.warning("router: %s sent no Hello within %.1f s; closing", address, self.hello_timeout_s)
                raise ConnectionError(f"{address} sent no Hello within {self.hello_timeout_s} s") from None
            if not isinstance(hello, P.Hello) or hello.role != role:
                raise ConnectionError(f"{address} is not a {role} worker (said {hello!r:.80})")
            channel.sock.settimeout(None)
        except BaseException:  # the socket of a worker that never joined is not kept
            channel.close()
            raise
        name = f"{role}-{hello.index}-{hello.pid}"  # unique per process: a restarted worker is a new name
        state = WorkerState(name=name, role=role, channel=channel, block_size=hello.block_size or spec.kv_block_size,
                            transfer_address=hello.transfer_address, num_free_blocks=hello.num_free_blocks,
                            max_num_seqs=spec.max_num_seqs)

        def reader() -> None:
            read_loop(channel, lambda ch, m: self.events.put(("worker", name, m)))
            self.events.put(("lost", name, None))

        self.events.put(("joined", state, None))
        threading.Thread(target=reader, name=f"router-{name}", daemon=True).start()
        log.info("router: %s joined from %s", name, address)
        return name

    def _handle(self, kind: str, who, msg) -> None:
        r = self.router
        if kind == "worker":
            r.on_worker_message(who, msg)
        elif kind == "lost":
            log.warning("router: lost %s", who)
            r.worker_lost(who)
        elif kind == "joined":
            r.add_worker(who)
        elif kind == "client_gone":
            r.client_gone(who)
        elif isinstance(msg, P.Submit):
            r.submit(who, msg)
        elif isinstance(msg, P.MetricsRequest):
            self._send(who, P.MetricsReply(body=r.export_metrics(msg.format)))
            if msg.reset:
                r.metrics.reset_latency()
        elif isinstance(msg, P.AddWorker):
            try:
                self.add_worker(msg.role, msg.address)
            except (OSError, ConnectionError, ValueError, KeyError) as e:
                who.reply_error(f"cannot add {msg.role} worker at {msg.address}: {e}")
        elif isinstance(msg, P.Hello):
            self._send(who, P.Hello(role="router"))
        elif isinstance(msg, P.Shutdown):
            self.stop()
        else:
            who.reply_error(f"router does not take {type(msg).__name__}")

    def serve(self) -> None:
        while not self._stop.is_set():
            try:
                self._handle(*self.events.get(timeout=TICK_S))
                while True:
                    self._handle(*self.events.get_nowait())
            except queue.Empty:
                pass
            except Exception:  # a router bug must not stop the service; it is logged with its event
                log.exception("router: event failed")
            self.router.tick()
        self.server.close()
        for w in self.router.workers.values():
            w.channel.close()

    def stop(self) -> None:
        self._stop.set()
