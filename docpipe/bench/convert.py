"""`docpipe bench convert`: pipeline-backend throughput (text layer, OCR off
unless asked) of `docpipe convert` with 1 and 2 workers, side by side with the
raw PyMuPDF `get_text("dict")` loop over the same pages, in one process.

Inputs are repeated `--repeat` times (as distinct files) so that worker
start-up is amortised the way it is on a real batch; the in-process row shows
the steady-state rate of one worker."""
from __future__ import annotations

import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import typer

from docpipe.bench.engine import RESULTS_DIR


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    bench_app.command("convert")(convert_bench)


def _pdfs(inputs: list[str]) -> list[Path]:
    from docpipe.ingest.sources import discover

    return [Path(s.path) for s in discover(inputs) if not s.error]


def raw_dict_pages_per_s(pdfs: list[Path]) -> tuple[int, float]:
    import pymupdf

    t = time.perf_counter()
    pages = 0
    for path in pdfs:
        with pymupdf.open(path) as doc:
            for page in doc:
                page.get_text("dict")
                pages += 1
    return pages, pages / (time.perf_counter() - t)


def in_process_pages_per_s(pdfs: list[Path], opts) -> float:
    from docpipe.pipeline import process_document

    t, pages = time.perf_counter(), 0
    for path in pdfs:
        pages += len(process_document(str(path), opts).pages)
    return pages / (time.perf_counter() - t)


def batch_pages_per_s(folder: Path, out: Path, opts) -> tuple[int, float, int]:
    from docpipe.batch import plan_batch, run_batch

    t = time.perf_counter()
    plan = plan_batch([str(folder)], out, opts)
    pages = failed = 0
    for result in run_batch(plan, opts):  # writes each document's outputs as it finishes
        pages += len(result.pages)
        failed += result.status == "failure"
    return pages, pages / (time.perf_counter() - t), failed


def convert_bench(
    inputs: list[str] = typer.Argument(..., help="PDFs, folders or globs (text-layer documents)"),
    repeat: int = typer.Option(5, help="copies of the input set in the batch"),
    workers: str = typer.Option("1,2", help="worker counts to run"),
    ocr: str = typer.Option("never", help="never | auto: OCR pages without a text layer"),
    out: Path = typer.Option(None, help="JSON path (default inference/bench/results/convert_<host>.json)"),
) -> None:
    """Pages/s of the pipeline backend vs the raw PyMuPDF text loop."""
    from docpipe.config import ConvertOptions

    pdfs = _pdfs(inputs)
    if not pdfs:
        raise typer.BadParameter(f"no PDFs found in {inputs}")
    res = {"command": "docpipe bench convert " + " ".join(sys.argv[3:]), "host": platform.node(),
           "cpus": os.cpu_count(), "load_avg_before": os.getloadavg(), "documents": len(pdfs), "repeat": repeat}
    res["raw_pages"], res["raw_get_text_dict_pages_per_s"] = raw_dict_pages_per_s(pdfs)
    res["in_process_pages_per_s"] = in_process_pages_per_s(pdfs, ConvertOptions(ocr=ocr, formats=("md",)))
    with tempfile.TemporaryDirectory() as tmp:
        folder = Path(tmp) / "in"
        folder.mkdir()
        for i in range(repeat):
            for pdf in pdfs:
                # real copies: inputs are de-duplicated by resolved path, so links would not repeat
                shutil.copyfile(pdf, folder / f"{i:03d}_{pdf.name}")
        for n in (int(w) for w in workers.split(",")):
            opts = ConvertOptions(workers=n, ocr=ocr)
            pages, rate, failed = batch_pages_per_s(folder, Path(tmp) / f"out{n}", opts)
            res[f"workers_{n}"] = {"pages": pages, "pages_per_s": rate, "failed_documents": failed}
    res["load_avg_after"] = os.getloadavg()
    out = out or RESULTS_DIR / f"convert_{platform.node() or 'host'}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1))
    typer.echo(f"{'run':36} {'pages/s':>10}")
    typer.echo(f"{'raw get_text(dict), 1 process':36} {res['raw_get_text_dict_pages_per_s']:>10.1f}")
    typer.echo(f"{'docpipe, in process (steady state)':36} {res['in_process_pages_per_s']:>10.1f}")
    for key in (k for k in res if k.startswith("workers_")):
        typer.echo(f"{'docpipe convert, ' + key.replace('_', ' '):36} {res[key]['pages_per_s']:>10.1f}")
    typer.echo(f"load average before/after: {res['load_avg_before']} / {res['load_avg_after']}; wrote {out}")
