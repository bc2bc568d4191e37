"""The batch loop: `convert_iter` plans the batch (output names, resume),
runs the documents and writes each one's outputs as soon as it finishes. The
pipeline backend runs `process_document` in the runner's worker processes;
the VLM backends stream pages of several documents through one engine in
this process (`docpipe.models.doc_stream`, built from `open_document` and
`finish_document`), so the engine stays full across document boundaries."""
from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from docpipe.config import ConvertOptions
from docpipe import pipeline  # attributes looked up at call time (tests patch them there)
from docpipe.schema import DocumentResult, Status
from docpipe.writers import files

@dataclass
class BatchPlan:
    out: Path | None  # output folder; None keeps results in memory only
    names: dict[str, str]  # source -> unique output name
    todo: list[str]  # sources to convert, in input order
    skipped: list[str]  # sources whose outputs are already finished (resume)
    input_errors: list[tuple[str, str]] = field(default_factory=list)  # (input, why it named no file)


def _owner_of(out: Path):
    from docpipe.writers import parquet  # pyarrow: parent process only, keeps workers light

    def owner(name: str) -> str | None:
        meta = files.read_manifest(out, name) or parquet.read_part_meta(out, name)
        return meta["source_path"] if meta else None
    return owner


def is_finished(out: Path, name: str, source: str, formats: tuple[str, ...]) -> bool:
    """True when every requested output of `source` exists and it did not fail."""
    from docpipe.writers import parquet

    key = files.source_key(source)
    metas = []
    if {"md", "json"} & set(formats):
        meta = files.read_manifest(out, name)
        if meta is None or not {"md", "json"} & set(formats) <= set(meta.get("formats", [])):
            return False
        metas.append(meta)
    if "parquet" in formats:
        metas.append(parquet.read_part_meta(out, name))
    return all(m and m["source_path"] == key and m["status"] != Status.FAILURE.value for m in metas)


def plan_batch(inputs, out, opts: ConvertOptions) -> BatchPlan:
    from docpipe.ingest.sources import discover

    found = discover(inputs)
    errors = [(s.path, s.error) for s in found if s.error]
    sources = [s.path for s in found if not s.error]
    out = Path(out) if out is not None else None
    if out is None:
        return BatchPlan(None, files.assign_names(sources), sources, [], errors)
    files.clean_stale(out)
    names = files.assign_names(sources, _owner_of(out))
    done = set() if opts.force else {s for s in sources if is_finished(out, names[s], s, opts.formats)}
    return BatchPlan(out, names, [s for s in sources if s not in done],
                     [s for s in sources if s in done], errors)


def write_outputs(result: DocumentResult, out: Path, opts: ConvertOptions) -> None:
    """Write one finished document; a write error becomes the document's failure."""
    from docpipe.writers import parquet

    try:
        if result.status != Status.FAILURE and {"md", "json"} & set(opts.formats):
            files.write_document(result, out, opts.formats)
        if "parquet" in opts.formats:
            parquet.write_part(result, out, opts.table_format)
    except Exception as e:  # noqa: BLE001 - disk, encoding or Arrow errors fail this document, not the batch
        result.status = Status.FAILURE
        result.error = f"{Path(result.source_path).name}: cannot write outputs to {out}: {type(e).__name__}: {e}"


def run_batch(plan: BatchPlan, opts: ConvertOptions, on_pages=None) -> Iterator[DocumentResult]:
    """Convert the plan's sources and yield each after its outputs are written.
    Pipeline backend: worker processes, completion order. VLM backends: one
    engine in this process streams pages of several documents at once
    (`_vlm_documents`), input order. Inputs that named no file come first, as
    failures (nothing is written for them: they are not documents).
    `on_pages(n)` gets page-count increments for live progress."""
    from docpipe.runner import failure, run_documents

    for path, error in plan.input_errors:
        yield failure(path, error)
    if not plan.todo:
        return
    if opts.effective_backend == "pipeline":
        results = run_documents(plan.todo, pipeline.process_document, opts, on_pages=on_pages)
    else:
        results = _vlm_documents(plan.todo, opts, on_pages)
    for result in results:
        result.name = plan.names.get(result.source_path) or files.safe_stem(result.source_path)
        if plan.out is not None:
            write_outputs(result, plan.out, opts)
        yield result


def _vlm_documents(sources: list[str], opts: ConvertOptions, on_pages) -> Iterator[DocumentResult]:
    """The VLM backends: every document's pages through one engine in this process
    (docpipe.models.doc_stream), results in input order."""
    try:
        pipeline.load_extractor(opts)
        from docpipe.models.doc_stream import stream_documents
    except (pipeline.BackendUnavailable, ImportError) as e:
        from docpipe.runner import failure

        for source in sources:
            yield failure(source, f"{pipeline._label(source)}: {e}", opts.effective_backend)
        return
    yield from stream_documents(sources, opts, on_pages)


def convert_iter(inputs, out, opts: ConvertOptions) -> Iterator[DocumentResult]:
    """Plan (skipping finished documents unless opts.force), run, write."""
    yield from run_batch(plan_batch(inputs, out, opts), opts)
