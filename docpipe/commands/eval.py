"""`docpipe eval PRED_DIR REF_DIR`: text NED (as bench/quality_eval.py
computes it) per file and mean, TEDS for tables; `--json` for machines."""
from __future__ import annotations

import json

import typer


def eval_command(
    pred_dir: str = typer.Argument(..., help="Predictions: <stem>.md or <stem>/<stem>.md (docpipe output)."),
    ref_dir: str = typer.Argument(..., help="References: <stem>.md."),
    as_json: bool = typer.Option(False, "--json", help="Print the report as JSON."),
) -> None:
    """Score predicted Markdown against references (NED: 0 best; TEDS: 1 best)."""
    from rich.console import Console
    from rich.table import Table

    from docpipe.eval.report import evaluate_dirs

    try:
        report = evaluate_dirs(pred_dir, ref_dir)
    except FileNotFoundError as e:
        Console(stderr=True).print(f"[red]error:[/red] {e}", soft_wrap=True, highlight=False)
        raise typer.Exit(2)
    if as_json:
        typer.echo(json.dumps(report.to_dict(), indent=1))
        return
    table = Table(title=f"docpipe eval {pred_dir} vs {ref_dir}")
    for col in ("file", "NED", "TEDS", "ref tables", "pred tables"):
        table.add_column(col, justify="left" if col == "file" else "right")
    for f in report.files:
        table.add_row(f.name + ("" if f.has_prediction else " (missing)"), f"{f.ned:.3f}",
                      "-" if f.teds is None else f"{f.teds:.3f}", str(f.num_ref_tables), str(f.num_pred_tables))
    teds = report.mean_teds
    table.add_row("MEAN", f"{report.mean_ned:.3f}", "-" if teds is None else f"{teds:.3f}", "", "")
    Console().print(table)


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("eval")(eval_command)
