"""GPU actor pool stage for the VLM backend, and how its actors are sized.

`VlmDocumentActor` is a long-lived Ray Data actor: its constructor loads the
engine once (the backend keeps one engine per process, keyed by model and
layout), and every document routed to it reuses that engine. Pages are
rendered on the actor's own CPU cores by the backend's render thread,
overlapping the GPU steps; `actor_resources` reserves those cores next to
the GPU. Actor lifecycle: created (model load) -> serving documents ->
killed/lost -> restarted by Ray (max_restarts=-1) with its in-flight
document retried (max_task_retries=-1); a retried document rewrites the
same name, so it still appears once.

Sizing (`actor_resources`): num_gpus comes from the layout's engine device
(a `cuda` device: one GPU per actor; `cpu`: none); with no layout, one GPU
when the cluster has GPUs, else the engine runs on the CPU.
"""
from __future__ import annotations

from dataclasses import dataclass

from docpipe.config import ConvertOptions
from docpipe.ray.documents import BatchConverter


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


def actor_resources(opts: ConvertOptions, cluster_gpus: float, num_cpus: float = 2.0) -> ActorResources:
    device = engine_device(opts)
    if device is None:
        return ActorResources(1.0 if cluster_gpus >= 1 else 0.0, num_cpus)
    return ActorResources(1.0 if device.startswith("cuda") else 0.0, num_cpus)


class VlmDocumentActor(BatchConverter):
    """Documents through the VLM backend, engine loaded once per actor (see module doc)."""

    def __init__(self, opts: ConvertOptions, store=None, done_ids: dict | None = None, fn=None):
        super().__init__(opts, store, done_ids, fn)
        self._load_engine()

    def _load_engine(self) -> None:
        from docpipe.models.backend import REPLAY_PREFIX, engine_client
        from docpipe.models.vlm_page import DEFAULT_FAMILY

        if not self.opts.model or self.opts.model.startswith(REPLAY_PREFIX):
            return  # replayed answers: nothing to load
        family = self.opts.extra.get("vlm_family", DEFAULT_FAMILY)
        engine_client(self.opts.model, self.opts.layout, family, **dict(self.opts.extra.get("vlm_engine", {})))
