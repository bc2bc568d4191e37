"""`docpipe serve --role prefill|decode|router --layout FILE [--model M] [--index N]`.

Runs one role of a disaggregated layout in this process, for deployments
where each role is started separately (one per host or per GPU). Workers
listen on their layout host at `port + index`; the router connects to every
worker the layout names, so a layout served this way needs fixed ports
(`port` per worker spec, `router_port`). The shared token comes from the
layout (`token`, or the environment variable named by `token_env`).
For a single host, `inference.disagg.cluster.Cluster` starts everything at once.
"""
from __future__ import annotations

import typer


def worker_addresses(layout) -> list[tuple[str, str]]:
    """(role, "host:port") of every worker of a layout with fixed ports."""
    out = []
    for spec in layout.workers:
        if not spec.port:
            raise typer.BadParameter(f"layout {layout.name}: {spec.role} workers need a fixed `port` to be served separately")
        for i in range(spec.count):
            out.append((spec.role, f"{spec.hosts[i % len(spec.hosts)]}:{spec.port + i}"))
    return out


def serve(role: str = typer.Option(..., help="prefill | decode | router"),
          layout: str = typer.Option(..., help="layout file or shipped layout name"),
          model: str = typer.Option("dummy:mineru2.5", help="HF checkpoint directory or dummy:<preset>"),
          index: int = typer.Option(0, help="which worker of the role (0-based)"),
          threads: int = typer.Option(0, help="torch threads (0 = torch's default)")) -> None:
    """Run one role (prefill worker, decode worker or router) of a layout."""
    from inference.disagg.process import run_router, run_worker
    from inference.layouts import load_layout

    spec = load_layout(layout)
    if not spec.is_disaggregated:
        raise typer.BadParameter(f"layout {spec.name} is embedded: nothing to serve (use docpipe convert)")
    if not spec.auth_token():
        raise typer.BadParameter(f"no shared token: set ${spec.token_env} (or `token` in {spec.name})")
    if role == "router":
        run_router(layout, worker_addresses(spec))
    elif role in ("prefill", "decode"):
        count = spec.role(role).count
        if not 0 <= index < count:
            raise typer.BadParameter(f"--index must be in [0, {count}) for {role} in {spec.name}")
        run_worker(role, model, layout, index, num_threads=threads or None)
    else:
        raise typer.BadParameter("--role must be prefill, decode or router")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    app.command("serve")(serve)
