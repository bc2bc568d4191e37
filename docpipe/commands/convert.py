"""`docpipe convert INPUTS... --out DIR`: the batch conversion command.

Flow: options -> ConvertOptions (bad values exit 2 before any work) -> backend
check (a VLM stack that cannot run exits 2 with "VLM backend not available:
<reason>", never silently falls back to the pipeline) -> plan (discover,
names, resume) -> run with a progress bar (documents, pages/s) -> summary
(every failed or partial document with its reason, totals). Exit code: 0 when
every document converted (or was already finished), 1 when any failed, 2 for
usage errors.
"""
from __future__ import annotations

import time
from dataclasses import dataclass, field

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from docpipe.schema import DocumentResult, Status


@dataclass
class Tally:
    """Running totals of one convert run."""

    started_s: float = field(default_factory=time.perf_counter)  # perf_counter at start
    num_docs: int = 0  # documents converted in this run (any status)
    num_pages: int = 0  # pages converted in this run
    num_failed_pages: int = 0
    num_pages_live: int = 0  # pages reported by workers so far (for the live rate)
    problems: list[tuple[str, str, str]] = field(default_factory=list)  # (status, source_path, error), not
    # whole results: a long batch must not keep every partial document's pages in memory
    by_status: dict[str, int] = field(default_factory=dict)

    def add(self, result: DocumentResult) -> None:
        self.num_docs += 1
        self.num_pages += sum(1 for p in result.pages if p.ok)
        self.num_failed_pages += sum(1 for p in result.pages if not p.ok)
        status = Status(result.status).value
        self.by_status[status] = self.by_status.get(status, 0) + 1
        if result.status != Status.SUCCESS:
            self.problems.append((status, result.source_path, result.error))

    @property
    def elapsed_s(self) -> float:
        return time.perf_counter() - self.started_s

    def on_pages(self, num_pages: int) -> None:
        self.num_pages_live += num_pages

    def rate(self) -> str:
        secs = max(self.elapsed_s, 1e-9)
        pages = max(self.num_pages_live, self.num_pages + self.num_failed_pages)
        return f"{pages} pages, {pages / secs:.2f} pages/s, {self.num_docs / secs:.2f} docs/s"


def _fail(console: Console, message: str, code: int = 2) -> None:
    console.print(f"[red]error:[/red] {message}", soft_wrap=True, highlight=False)
    raise typer.Exit(code)


def _print_summary(console: Console, tally: Tally, num_skipped: int, out: str) -> None:
    for status, source_path, error in tally.problems:
        # ingest errors already start with the path; runner errors do not
        where = "" if error.startswith(source_path) else f"{source_path}: "
        console.print(f"{status.upper()} {where}{error}", soft_wrap=True, highlight=False, markup=False)
    secs = tally.elapsed_s
    table = Table(title="docpipe convert summary", show_header=False)
    table.add_column("what")
    table.add_column("value", justify="right")
    rows = [("documents", tally.num_docs + num_skipped), ("success", tally.by_status.get("success", 0)),
            ("partial", tally.by_status.get("partial", 0)), ("failed", tally.by_status.get("failure", 0)),
            ("skipped (already done)", num_skipped), ("pages converted", tally.num_pages),
            ("pages failed", tally.num_failed_pages), ("seconds", f"{secs:.1f}"),
            ("pages/s", f"{tally.num_pages / max(secs, 1e-9):.2f}")]
    for what, value in rows:
        table.add_row(what, str(value))
    console.print(table)
    console.print(f"outputs in {out}", soft_wrap=True, highlight=False)


def convert_command(
    inputs: list[str] = typer.Argument(..., help="PDF files, folders (searched recursively) or globs."),
    out: str = typer.Option(..., "--out", "-o", help="Output folder."),
    backend: str = typer.Option("auto", help="auto | pipeline | vlm (auto: hybrid when --model is given)."),
    pages: str = typer.Option(None, help="1-based page ranges, e.g. '1-3,7'. Default: all."),
    dpi: int = typer.Option(200, help="Render resolution for OCR, crops and the VLM."),
    workers: int = typer.Option(2, help="Document worker processes."),
    force: bool = typer.Option(False, "--force", help="Redo documents whose outputs already exist."),
    format: str = typer.Option("md,json,parquet", "--format", help="Outputs, comma separated: md,json,parquet."),
    password: str = typer.Option(None, help="Password for encrypted PDFs."),
    table_format: str = typer.Option("auto", help="auto | markdown | html."),
    ocr: str = typer.Option("auto", help="auto | always | never."),
    timeout: float = typer.Option(600.0, help="Per-document time limit, seconds."),
    model: str = typer.Option(None, help="VLM checkpoint dir, hub id, dummy:<preset> or replay:DIR."),
    layout: str = typer.Option(None, help="Deployment layout file for the engine."),
    ray: str = typer.Option(None, "--ray", metavar="ADDRESS|local",
                            help="Run on Ray: 'local' starts one here; else a cluster address ('auto', ray://...)."),
) -> None:
    """Convert PDFs to Markdown, content_list JSON, images and Parquet."""
    from docpipe.config import ConvertOptions
    from docpipe.batch import plan_batch, run_batch
    from docpipe.pipeline import BackendUnavailable, load_extractor

    console = Console(stderr=True)
    try:
        opts = ConvertOptions(backend=backend, pages=pages, dpi=dpi, workers=workers, force=force,
                              formats=format, password=password, table_format=table_format, ocr=ocr,
                              timeout_s=timeout, model=model, layout=layout)
    except ValueError as e:
        _fail(console, str(e))
    if opts.backend == "vlm" and not opts.model:
        _fail(console, "VLM backend not available: --backend vlm needs --model (checkpoint dir or hub id)")
    try:
        load_extractor(opts)
    except BackendUnavailable as e:
        _fail(console, str(e))
    if ray:
        from docpipe.ray.cli import run_from_cli
        raise typer.Exit(run_from_cli(inputs, out, opts, ray, console))
    try:
        plan = plan_batch(inputs, out, opts)
    except (OSError, ValueError) as e:
        _fail(console, f"cannot read inputs: {e}")
    if not plan.todo and not plan.skipped and not plan.input_errors:
        _fail(console, f"no PDF files found in {' '.join(inputs)}", code=1)

    tally = Tally()
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
               TextColumn("{task.fields[rate]}"), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        task = progress.add_task("documents", total=len(plan.todo) + len(plan.input_errors), rate="")

        def on_pages(num_pages: int) -> None:
            tally.on_pages(num_pages)
            progress.update(task, rate=tally.rate())

        for result in run_batch(plan, opts, on_pages=on_pages):
            tally.add(result)
            progress.update(task, advance=1, rate=tally.rate())
    _print_summary(Console(), tally, len(plan.skipped), out)
    if tally.by_status.get("failure", 0):
        raise typer.Exit(1)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("convert")(convert_command)
