"""`docpipe` command line. Each command lives in its own module, which exposes
`register(app, bench_app)`; heavy imports happen inside the commands so that
`docpipe --help` stays fast and a missing optional extra only fails the
command that needs it."""
from __future__ import annotations

import importlib
import importlib.util

import typer

app = typer.Typer(no_args_is_help=True, add_completion=False, help="Batch PDF to Markdown with a document VLM.")
bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks, each run side by side with its baseline.")
app.add_typer(bench_app, name="bench")

# Command modules, in help order. A module is listed here once it exists.
COMMAND_MODULES = (
    "docpipe.commands.convert",
    "docpipe.commands.eval",
    "docpipe.commands.serve",
    "docpipe.bench.engine",
    "docpipe.bench.transfer",
    "docpipe.bench.pd",
    "docpipe.bench.pipeline",
    "docpipe.bench.convert",
)


def _register_all() -> None:
    for name in COMMAND_MODULES:
        if importlib.util.find_spec(name) is None:
            continue
        importlib.import_module(name).register(app, bench_app)


@app.callback()
def _process_settings() -> None:
    """Settings of the process the command runs in (docpipe owns it): the GIL switch interval."""
    from inference.env import apply_switch_interval
    apply_switch_interval()  # a bad variable must not stop every command (--help included)


_register_all()

if __name__ == "__main__":
    app()
