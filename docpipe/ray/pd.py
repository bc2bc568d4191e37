"""Prefill/decode pools on Ray for a disaggregated layout.

Each actor wraps one worker of `inference.disagg` (PrefillWorker or
DecodeWorker) or the router (`inference.router.server.RouterServer`): the
actor's constructor builds it (model loaded once), binds its listeners to
the node's own IP (the layout's `hosts` name machines of a static cluster;
on Ray the scheduler picks the node), and runs its `serve()` loop on a
thread. KV blocks go prefill -> decode through the layout's transfer engine,
node to node (`network_layout`: a host-local transport, shm or cuda-ipc,
becomes the layout's node-to-node fallback, else tcp, since Ray may put
prefill and decode on different nodes); Ray's object store carries only the
control handshake (addresses), never KV.

Lifecycle (`PdPools`): start() creates `count` prefill actors and `count`
decode actors (the layout's worker counts; num_gpus 1 for a cuda device) ->
collects their control addresses -> creates the router actor, which
connects to every worker -> `router_address` is what clients submit to
(`endpoint()`: address + token, for `inference.disagg.remote.RouterLLM`; the
VLM document actors of the job use it). A worker actor that dies is
restarted by Ray (max_restarts) and `watch()` announces the new address to
the router, like `inference.disagg.cluster.Cluster` does for local
processes. stop() kills every actor; `with PdPools(...) as pools:` does both.
The token never appears in a repr or a log line.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import secrets
import threading
from dataclasses import dataclass, field

from docpipe.ray.require import require_ray

MAX_RESTARTS = 4  # a worker actor is restarted this many times before the pool gives up
NODE_TO_NODE = ("tcp", "rdma")  # KV transports whose two ends may sit on different machines

log = logging.getLogger("docpipe.ray")


@dataclass(frozen=True)
class RouterEndpoint:
    """Where clients submit requests; what the job hands its VLM document actors."""

    address: str  # router "host:port"
    token: str = field(repr=False)  # shared HMAC token; kept out of reprs (and so out of logs)


def needs_pools(opts) -> bool:
    """Whether VLM documents under `opts` need PD pools: a disaggregated layout
    file and a model to load (replayed answers and router:// need none)."""
    from docpipe.models.backend import REPLAY_PREFIX
    from docpipe.models.engine_client import ROUTER_PREFIX
    from inference.layouts import load_layout

    if not opts.layout or opts.layout.startswith(ROUTER_PREFIX) or not opts.model:
        return False
    return not opts.model.startswith(REPLAY_PREFIX) and load_layout(opts.layout).is_disaggregated


def start_pools(opts, num_cpus_per_actor: float = 1.0) -> "PdPools | None":
    """Started pools for the job's VLM documents (the model, layout and engine
    settings of `opts`), or None when they need none (`needs_pools`)."""
    if not needs_pools(opts):
        return None
    from inference.layouts import load_layout

    return PdPools(opts.model, load_layout(opts.layout), engine_kw=dict(opts.extra.get("vlm_engine", {})),
                   num_cpus_per_actor=num_cpus_per_actor).start()


def network_layout(layout):
    """The layout with a node-to-node KV transport (see module doc)."""
    t = layout.transfer
    if t.transport in NODE_TO_NODE or t.transport == "fake":
        return layout
    transport = t.fallback if t.fallback in NODE_TO_NODE else "tcp"
    log.info("layout %s: KV over %s instead of %s (Ray may place prefill and decode on different nodes)",
             layout.name, transport, t.transport)
    layout = copy.deepcopy(layout)
    layout.transfer = dataclasses.replace(t, transport=transport, fallback=None)
    return layout


def _on_this_node(layout, role: str):
    """The layout with `role`'s listeners bound to this node's IP."""
    import ray

    layout = copy.deepcopy(layout)
    layout.role(role).hosts = [ray.util.get_node_ip_address()]
    layout.role(role).port = 0  # several actors may share a node: any free port
    return layout


class PdWorkerActor:
    """One prefill or decode worker (see module doc)."""

    def __init__(self, role: str, model: str, layout, index: int, token: str, engine_kw: dict | None = None):
        if role == "prefill":
            from inference.disagg.prefill_worker import PrefillWorker as cls
        elif role == "decode":
            from inference.disagg.decode_worker import DecodeWorker as cls
        else:
            raise ValueError(f"unknown worker role {role!r}")
        layout = _on_this_node(layout, role)
        layout.token = token
        self.worker = cls(model, layout, index, **(engine_kw or {}))
        self.thread = threading.Thread(target=self.worker.serve, name=f"pd-{role}-{index}", daemon=True)
        self.thread.start()

    def info(self) -> dict:
        return {"address": self.worker.address, "transfer_address": getattr(self.worker, "transfer_address", ""),
                "alive": self.thread.is_alive()}

    def stop(self) -> None:
        self.worker.stop()
        self.thread.join(timeout=10)


class PdRouterActor:
    """The router, connected to every worker's control address."""

    def __init__(self, layout, token: str, workers: list[tuple[str, str]], router_kw: dict | None = None):
        import ray

        from inference.router.server import RouterServer

        layout = copy.deepcopy(layout)
        layout.token = token
        self.server = RouterServer(layout, token.encode(), host=ray.util.get_node_ip_address(), port=0,
                                   **(router_kw or {}))
        for role, address in workers:
            self.server.add_worker(role, address)
        self.thread = threading.Thread(target=self.server.serve, name="pd-router", daemon=True)
        self.thread.start()

    def address(self) -> str:
        return self.server.address

    def add_worker(self, role: str, address: str) -> str:
        return self.server.add_worker(role, address)

    def stop(self) -> None:
        self.server.stop()


@dataclass
class PdPools:
    model: str  # checkpoint dir, hub id or dummy:<preset>
    layout: object  # inference.layouts.Layout with is_disaggregated
    engine_kw: dict = field(default_factory=dict)  # EngineConfig overrides for every worker
    token: str = field(default_factory=lambda: secrets.token_hex(16), repr=False)  # shared by workers, router, clients
    workers: dict = field(default_factory=dict)  # (role, index) -> actor handle
    addresses: dict = field(default_factory=dict)  # (role, index) -> control address
    router: object = None  # router actor handle
    router_address: str = ""
    num_cpus_per_actor: float = 1.0  # cores per worker/router actor (engine loop, transfer threads)

    def start(self) -> "PdPools":
        ray = require_ray()
        if not self.layout.is_disaggregated:
            raise ValueError(f"layout {self.layout.name} is not disaggregated: use whole-engine actors")
        self.layout = network_layout(self.layout)
        self.token = self.layout.auth_token() or self.token
        try:
            self._start_actors(ray)
        except BaseException:  # actors already created must not outlive a failed start
            self.stop()
            raise
        log.info("PD pools of layout %s: router at %s, workers %s", self.layout.name, self.router_address,
                 sorted(self.addresses))
        return self

    def _start_actors(self, ray) -> None:
        """Workers first (their addresses are the router's arguments), then the router."""
        worker_cls = ray.remote(PdWorkerActor)
        for spec in self.layout.workers:
            gpus = 1 if spec.device.startswith("cuda") else 0
            for index in range(spec.count):
                actor = worker_cls.options(num_gpus=gpus, num_cpus=self.num_cpus_per_actor,
                                           max_restarts=MAX_RESTARTS).remote(
                    spec.role, self.model, self.layout, index, self.token, self.engine_kw)
                self.workers[(spec.role, index)] = actor
        infos = ray.get([a.info.remote() for a in self.workers.values()])
        self.addresses = {k: info["address"] for k, info in zip(self.workers, infos)}
        pairs = [(role, addr) for (role, _), addr in sorted(self.addresses.items())]
        router_cls = ray.remote(PdRouterActor).options(num_cpus=self.num_cpus_per_actor)
        self.router = router_cls.remote(self.layout, self.token, pairs)
        self.router_address = ray.get(self.router.address.remote())

    def watch(self) -> int:
        """Re-announce restarted workers (new address) to the router; returns how many."""
        ray = require_ray()
        changed = 0
        for key, actor in self.workers.items():
            address = ray.get(actor.info.remote())["address"]
            if address != self.addresses[key]:
                ray.get(self.router.add_worker.remote(key[0], address))
                self.addresses[key] = address
                changed += 1
        return changed

    def endpoint(self) -> RouterEndpoint:
        return RouterEndpoint(self.router_address, self.token)

    def client(self):
        from inference.disagg.client import RouterClient

        return RouterClient(self.router_address, self.token.encode())

    def stop(self) -> None:
        ray = require_ray()
        for actor in [*self.workers.values(), *([self.router] if self.router else [])]:
            ray.kill(actor, no_restart=True)
        self.workers.clear()
        self.router = None

    def __enter__(self) -> "PdPools":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()
