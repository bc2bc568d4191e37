"""`docpipe serve --role prefill|decode|router --layout FILE [--model M] [--index N]`.

Runs one role of a disaggregated layout in this process, for deployments
where each role is started separately (one per host or per GPU).

Finding each other: every role prints `<role> [index] listening on
host:port` once its listener is up, and with `--address-file PATH` also
writes {role, index, address, transfer_address, pid} there as JSON (written
atomically), so a parent process can wait for the file instead of parsing
output. Ports come from the layout (`port` + index per worker spec,
`router_port`) unless `--port` overrides them; 0 means an ephemeral port.
The router connects at start to every worker whose port is fixed (layout
or `--worker ROLE=HOST:PORT`); a worker with an ephemeral port joins by
itself when given `--router HOST:PORT` (it sends AddWorker once it serves,
retrying until the router is up). The shared token comes from the layout
(`token`, or the environment variable named by `token_env`).
For a single host, `inference.disagg.cluster.Cluster` starts everything at once.
"""
from __future__ import annotations

from pathlib import Path

import typer


def worker_addresses(layout) -> list[tuple[str, str]]:
    """(role, "host:port") of every worker of a layout whose port is fixed;
    workers with port 0 are left to join the router themselves (--router)."""
    out = []
    for spec in layout.workers:
        if not spec.port:
            continue
        for i in range(spec.count):
            out.append((spec.role, f"{spec.hosts[i % len(spec.hosts)]}:{spec.port + i}"))
    return out


def parse_worker(value: str) -> tuple[str, str]:
    role, sep, address = value.partition("=")
    host, colon, port = address.rpartition(":")
    if not sep or role not in ("prefill", "decode") or not colon or not host or not port.isdigit():
        raise typer.BadParameter(f"--worker must be prefill=HOST:PORT or decode=HOST:PORT, got {value!r}")
    return role, address


def serve(role: str = typer.Option(..., help="prefill | decode | router"),
          layout: str = typer.Option(..., help="layout file or shipped layout name"),
          model: str = typer.Option("dummy:mineru2.5", help="HF checkpoint directory or dummy:<preset>"),
          index: int = typer.Option(0, help="which worker of the role (0-based)"),
          threads: int = typer.Option(0, help="torch threads (0 = torch's default)"),
          port: int = typer.Option(None, help="listen port (overrides the layout; 0 = ephemeral, printed)"),
          router: str = typer.Option(None, help="workers: HOST:PORT of the router to join once listening"),
          worker: list[str] = typer.Option(None, help="router: ROLE=HOST:PORT of a worker to connect to (repeatable)"),
          address_file: Path = typer.Option(None, help="write {role, index, address, transfer_address, pid} JSON here"),
          num_kv_blocks: int = typer.Option(0, help="workers: KV blocks (0 = engine default)"),
          max_model_len: int = typer.Option(0, help="workers: tokens per request at most (0 = engine default)")) -> None:
    """Run one role (prefill worker, decode worker or router) of a layout."""
    from inference.disagg.process import run_router, run_worker
    from inference.layouts import load_layout

    spec = load_layout(layout)
    if not spec.is_disaggregated:
        raise typer.BadParameter(f"layout {spec.name} is embedded: nothing to serve (use docpipe convert)")
    if not spec.auth_token():
        raise typer.BadParameter(f"no shared token: set ${spec.token_env} (or `token` in {spec.name})")
    if port is not None and not 0 <= port < 65536:
        raise typer.BadParameter("--port must be in [0, 65535]")
    if role == "router":
        workers = [parse_worker(w) for w in worker or []] or worker_addresses(spec)
        if not workers:
            typer.echo("router: no worker has a fixed port; workers join with --router", err=True)
        run_router(spec, workers, port=port, address_file=address_file)
    elif role in ("prefill", "decode"):
        wspec = spec.role(role)
        if not 0 <= index < wspec.count:
            raise typer.BadParameter(f"--index must be in [0, {wspec.count}) for {role} in {spec.name}")
        if port and port <= index:
            raise typer.BadParameter(f"--port {port} is below --index {index}: workers bind port + index")
        if port is not None:
            wspec.port = port - index if port else 0  # the worker binds port + index
        engine_kw = {k: v for k, v in (("num_kv_blocks", num_kv_blocks), ("max_model_len", max_model_len)) if v}
        run_worker(role, model, spec, index, engine_kw, num_threads=threads or None, router=router,
                   address_file=address_file)
    else:
        raise typer.BadParameter("--role must be prefill, decode or router")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("serve")(serve)
