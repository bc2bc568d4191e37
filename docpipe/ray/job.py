"""The batch job on Ray: `run_job(inputs, out, opts, place)`.

Lifecycle: connect (`connect`: a local Ray, an address, or the running one)
-> plan on the driver (`plan_job`: list sources, assign output names, skip
documents whose outputs are finished: the `.docpipe.json` manifest and/or
the Parquet part, as in the single-process run; collect the doc_ids already
in the dataset) -> one Ray Data pipeline: `from_items` (one block per
document: path + name, no bytes on the driver) -> `map_documents` (CPU tasks
or GPU actors; each worker reads, converts and writes its document) -> the
driver streams one summary row per document (name, status, error, pages).
With a disaggregated layout the VLM actors submit to PD pools
(`pd.start_pools`) that the job starts before the pipeline and stops after it.

Guarantees:
- resumable: a rerun converts only what is not finished; a document whose
  bytes (doc_id) are already in the dataset under another name is skipped;
- a lost worker or node costs its in-flight documents, which Ray re-runs
  (task max_retries, actor restarts); writes are atomic and keyed by name,
  so a re-run replaces and every document appears exactly once;
- a document whose task keeps dying is not a failed job: the pipeline is run
  with errored blocks tolerated, and the driver writes a failure row for
  every planned document that came back without a summary.
"""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

from docpipe.config import ConvertOptions
from docpipe.ray.datasets import RayOptions, map_documents, uses_actors
from docpipe.ray.pd import start_pools
from docpipe.ray.require import require_ray
from docpipe.writers import files

LOST_ERROR = "lost: its worker died on every attempt ({} retries); see the Ray logs"


@dataclass
class JobPlan:
    store: object  # OutputStore
    items: list[dict]  # {"path", "name"} per document to convert, in input order
    skipped: list[str] = field(default_factory=list)  # sources already finished (resume)
    input_errors: list[tuple[str, str]] = field(default_factory=list)  # (input, why it named no file)
    done_ids: dict[str, str] = field(default_factory=dict)  # doc_id -> name already in the dataset


def connect(address: str | None, **init_kw):
    """Ray, initialised: `local` starts a local Ray; an address joins a cluster;
    None uses RAY_ADDRESS or starts a local one. Reuses a running session."""
    ray = require_ray()
    if not ray.is_initialized():
        init_kw.setdefault("include_dashboard", False)
        ray.init(address=None if address in (None, "") else address, **init_kw)
    return ray


def _owner_of(store):
    if not store.is_local:
        return store.owner_of
    from docpipe.writers import parquet

    def owner(name: str) -> str | None:
        meta = files.read_manifest(store.root, name) or parquet.read_part_meta(store.root, name)
        return meta["source_path"] if meta else None
    return owner


def plan_job(inputs: list[str], out: str, opts: ConvertOptions) -> JobPlan:
    from docpipe.ray.storage import OutputStore, list_sources

    store = OutputStore(str(out), tuple(opts.formats), opts.table_format)
    if store.is_local:
        files.clean_stale(out)
    sources, errors = list_sources(list(inputs))
    names = files.assign_names(sources, _owner_of(store))
    done = set() if opts.force else {s for s in sources if store.is_finished(names[s], s)}
    items = [{"path": s, "name": names[s]} for s in sources if s not in done]
    done_ids = {} if opts.force else store.done_doc_ids()
    return JobPlan(store, items, [s for s in sources if s in done], errors, done_ids)


def _failure_row(path: str, name: str, error: str) -> dict:
    from docpipe.ray.documents import failure_result, summary_row

    return summary_row(failure_result(path, error, name))


def run_plan(plan: JobPlan, opts: ConvertOptions, place: RayOptions | None = None, fn=None) -> Iterator[dict]:
    """Summary rows, in completion order (see module doc). Inputs that named no
    file come first, as failures with nothing written (as in the single-process run)."""
    place = place or RayOptions()
    ray = connect(place.address)
    for path, error in plan.input_errors:
        yield _failure_row(path, files.safe_stem(path), error)
    if not plan.items:
        return
    ctx = ray.data.DataContext.get_current()
    saved = ctx.max_errored_blocks
    ctx.max_errored_blocks = -1  # a document that kills its worker every time must not fail the job
    seen: set[str] = set()
    pools = None
    try:
        pools = start_pools(opts, place.num_cpus_per_pd_actor) if uses_actors(opts) else None
        ds = ray.data.from_items(plan.items, override_num_blocks=len(plan.items))
        ds = map_documents(ds, opts, place, store=plan.store, done_ids=plan.done_ids, fn=fn,
                           router=pools.endpoint() if pools else None)
        for row in ds.iter_rows():
            seen.add(row["name"])
            yield row
    finally:
        ctx.max_errored_blocks = saved
        if pools is not None:
            pools.stop()
    yield from _write_lost(plan, opts, seen, place.max_retries)


def _write_lost(plan: JobPlan, opts: ConvertOptions, seen: set[str], retries: int) -> Iterator[dict]:
    from docpipe.ray.documents import failure_result, summary_row

    for item in plan.items:
        if item["name"] in seen:
            continue
        result = failure_result(item["path"], f"{files.safe_stem(item['path'])}: {LOST_ERROR.format(retries)}",
                                item["name"])
        plan.store.write(result, opts)
        yield summary_row(result)


def run_job(inputs, out: str, opts: ConvertOptions | None = None, place: RayOptions | None = None,
            fn=None, **options) -> Iterator[dict]:
    """Plan and run; yields one summary row per document converted in this run.
    `options`: ConvertOptions fields when `opts` is not given."""
    from docpipe.api import make_options

    opts = opts or make_options(dict(options))
    inputs = [inputs] if isinstance(inputs, str) else list(inputs)
    require_ray()
    plan = plan_job(inputs, out, opts)
    return run_plan(plan, opts, place, fn)
