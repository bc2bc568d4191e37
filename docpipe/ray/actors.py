"""Actor pool stage for the VLM backend, and how its actors are sized.

`VlmDocumentActor` is a long-lived Ray Data actor: its constructor loads the
engine once (the backend keeps one engine per process, keyed by model and
layout), and every document routed to it reuses that engine. With a
disaggregated layout there is no engine in the actor: the job's PD pools
(`pd.PdPools`) run it, and the actor gets their `RouterEndpoint`
(`router_options`): its options name the router (`router://host:port`,
see `docpipe.models.engine_client`), and the shared token goes into the
actor process's $DOCPIPE_TOKEN, never into the options (which get printed).
The actor then only renders and tokenizes pages and submits them. Pages are
rendered on the actor's own CPU cores by the backend's render thread,
overlapping the GPU steps; `actor_resources` reserves those cores next to
the GPU. Actor lifecycle: created (model load) -> serving documents ->
killed/lost -> restarted by Ray (max_restarts=-1) with its in-flight
document retried (max_task_retries=-1); a retried document rewrites the
same name, so it still appears once.

Sizing (`actor_resources`): num_gpus comes from the layout's engine device
(a `cuda` device: one GPU per actor; `cpu`: none); with no layout, one GPU
when the cluster has GPUs, else the engine runs on the CPU; a router client
takes no GPU.
"""
from __future__ import annotations

import dataclasses
import os
from dataclasses import dataclass

from docpipe.config import ConvertOptions
from docpipe.models.engine_client import ROUTER_PREFIX
from docpipe.ray.documents import BatchConverter
from docpipe.ray.pd import RouterEndpoint, needs_pools


@dataclass
class ActorResources:
    num_gpus: float  # GPUs reserved per actor
    num_cpus: float  # CPU cores reserved per actor (render thread + engine loop)


def engine_device(opts: ConvertOptions) -> str | None:
    """The device the embedded engine will use: the layout's, the engine settings', or None (auto)."""
    device = opts.extra.get("vlm_engine", {}).get("device")
    if device or not opts.layout:
        return device
    from inference.layouts import load_layout

    layout = load_layout(opts.layout)
    return layout.workers[0].device


def is_router_client(opts: ConvertOptions) -> bool:
    return bool(opts.layout) and opts.layout.startswith(ROUTER_PREFIX)


def router_options(opts: ConvertOptions, router: RouterEndpoint | None) -> tuple[ConvertOptions, RouterEndpoint | None]:
    """(options for the actors, the router they submit to or None). `router`:
    the job's pools; a `router://` layout names a router run elsewhere (token
    from the driver's $DOCPIPE_TOKEN); a disaggregated layout without either is an error."""
    if router is None and is_router_client(opts):
        from docpipe.models.engine_client import router_address
        from inference.disagg.remote import resolve_token

        router = RouterEndpoint(router_address(opts.layout), resolve_token(None))
    if router is None:
        if needs_pools(opts):
            raise ValueError(f"layout {opts.layout} is disaggregated: start its pools "
                             "(`with docpipe.ray.pd.PdPools(model, layout) as pools`) and pass "
                             "router=pools.endpoint(); run_job does this itself")
        return opts, None
    return dataclasses.replace(opts, layout=ROUTER_PREFIX + router.address), router


def actor_resources(opts: ConvertOptions, cluster_gpus: float, num_cpus: float = 2.0) -> ActorResources:
    if is_router_client(opts):
        return ActorResources(0.0, num_cpus)
    device = engine_device(opts)
    if device is None:
        return ActorResources(1.0 if cluster_gpus >= 1 else 0.0, num_cpus)
    return ActorResources(1.0 if device.startswith("cuda") else 0.0, num_cpus)


class VlmDocumentActor(BatchConverter):
    """Documents through the VLM backend, engine loaded once per actor (see module doc)."""

    def __init__(self, opts: ConvertOptions, store=None, done_ids: dict | None = None, fn=None,
                 router: RouterEndpoint | None = None):
        super().__init__(opts, store, done_ids, fn)
        if router is not None:
            from inference.disagg.remote import TOKEN_ENV

            os.environ[TOKEN_ENV] = router.token  # where RouterLLM looks (this process is the actor's own)
        self._load_engine()

    def _load_engine(self) -> None:
        from docpipe.models.backend import REPLAY_PREFIX, engine_client
        from docpipe.models.vlm_page import DEFAULT_FAMILY

        if not self.opts.model or self.opts.model.startswith(REPLAY_PREFIX):
            return  # replayed answers: nothing to load
        family = self.opts.extra.get("vlm_family", DEFAULT_FAMILY)
        engine_client(self.opts.model, self.opts.layout, family, **dict(self.opts.extra.get("vlm_engine", {})))
