"""Ray Data stages: `convert_dataset` for users' own pipelines, and
`map_documents`, the stage both it and the job use.

    import ray, docpipe.ray
    ds = ray.data.read_binary_files("s3://bucket/pdfs/", include_paths=True)
    rows = docpipe.ray.convert_dataset(ds, backend="pipeline")   # Parquet schema rows
    rows.write_parquet("s3://bucket/docpipe/")

Input: a Dataset with a `path` column (local path or URI: the worker reads
it) and/or a `bytes` column (the PDF's bytes; then `path` only names it),
optionally `name` (output stem). Output: one row per input document with the
schema of `docpipe.writers.parquet.SCHEMA` (failures are rows with status
"failure" and the error, never an exception).

Placement: pipeline backend -> one CPU task per document (batch_size 1:
a lost worker costs one document, which Ray retries up to `max_retries`);
VLM backend -> an actor pool `VlmDocumentActor` with concurrency
(min_actors, max_actors), num_gpus from the layout (`actors.actor_resources`).
A disaggregated layout needs the router of its PD pools (`router`, a
`pd.RouterEndpoint`): the actors submit pages there and hold no engine
(`actors.router_options`); `run_job` starts and stops those pools itself,
`convert_dataset` callers pass `router=pools.endpoint()` of pools they run
for as long as the dataset is consumed.
"""
from __future__ import annotations

from dataclasses import dataclass

from docpipe.config import ConvertOptions
from docpipe.ray.require import require_ray

RAY_TASK_RETRIES = 3  # Ray's default max_retries for tasks lost with their worker


@dataclass
class RayOptions:
    """How the job is placed on the cluster (the conversion itself is ConvertOptions)."""

    address: str | None = None  # Ray address, "local" for a local Ray, None: RAY_ADDRESS or local
    num_cpus_per_document: float = 1.0  # cores reserved per pipeline-backend document task
    num_cpus_per_actor: float = 2.0  # cores per VLM actor: render thread + engine loop
    num_cpus_per_pd_actor: float = 1.0  # cores per prefill/decode worker and router actor (disaggregated layout)
    min_actors: int = 1  # VLM actor pool lower bound
    max_actors: int | None = None  # VLM actor pool upper bound; None: one per cluster GPU (at least 1)
    max_retries: int = RAY_TASK_RETRIES  # re-runs of a document task lost with its worker or node

    def __post_init__(self) -> None:
        if self.min_actors < 1 or (self.max_actors is not None and self.max_actors < self.min_actors):
            raise ValueError(f"need 1 <= min_actors <= max_actors, got {self.min_actors}, {self.max_actors}")
        if self.max_retries < 0:
            raise ValueError("max_retries must be >= 0")


def uses_actors(opts: ConvertOptions) -> bool:
    return opts.effective_backend in ("vlm", "hybrid")


def map_documents(ds, opts: ConvertOptions, place: RayOptions, store=None, done_ids=None, fn=None, router=None):
    """The conversion stage over `ds` (see module doc)."""
    ray = require_ray()
    from docpipe.ray.documents import BatchConverter

    common = dict(batch_size=1, batch_format="pyarrow", zero_copy_batch=True)
    if not uses_actors(opts):
        # Ray's task default is 3 retries; passing it as a remote arg is deprecated from Ray 2.60 on,
        # so it is passed only when it differs.
        retries = {} if place.max_retries == RAY_TASK_RETRIES else {"max_retries": place.max_retries}
        return ds.map_batches(BatchConverter(opts, store, done_ids, fn), num_cpus=place.num_cpus_per_document,
                              **retries, **common)
    from docpipe.ray.actors import VlmDocumentActor, actor_resources, router_options

    actor_opts, router = router_options(opts, router)
    gpus = ray.cluster_resources().get("GPU", 0)
    res = actor_resources(actor_opts, gpus, place.num_cpus_per_actor)
    max_actors = place.max_actors or max(place.min_actors, int(gpus // res.num_gpus) if res.num_gpus else 1)
    return ds.map_batches(VlmDocumentActor, fn_constructor_kwargs=dict(opts=actor_opts, store=store,
                                                                       done_ids=done_ids, fn=fn, router=router),
                          concurrency=(place.min_actors, max_actors), num_gpus=res.num_gpus,
                          num_cpus=res.num_cpus, **common)


def convert_dataset(ds, *, place: RayOptions | None = None, fn=None, router=None, **options):
    """Dataset of PDFs (`path` and/or `bytes`) -> Dataset of result rows (see module doc).
    `options`: ConvertOptions fields, or `options=ConvertOptions(...)`; `router`:
    the PD pools' endpoint for a disaggregated layout."""
    require_ray()
    from docpipe.api import make_options

    opts = make_options(dict(options))
    return map_documents(ds, opts, place or RayOptions(), store=None, fn=fn, router=router)
