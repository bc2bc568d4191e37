"""`docpipe bench pd`: the mineru-synthetic workload, monolithic engine vs the
layout's disaggregated prefill/decode, side by side in one run.

Both sides get the same requests (seeded images and prompts, forced output
lengths, greedy) with the same dependency: a page's block requests are
issued when its layout request finishes. Monolithic = one LLMEngine with the
layout's prefill worker settings, driven step by step in this process.
Disaggregated = cluster.Cluster (router + workers as processes) through a
RouterClient. Reports throughput (output tokens/s, pages/s), TTFT and TPOT
p50/p99, the disaggregated side's per-stage latency (router metrics
"stages_s": queue, prefill, handoff, transfer, decode ...), transfer GB/s,
and whether the outputs are token-identical; writes
JSON to --out (default inference/bench/results/pd_<host>.json).
"""
from __future__ import annotations

import json
import platform
import socket
import sys
import time
from pathlib import Path

import typer

RESULTS = Path(__file__).resolve().parents[2] / "inference" / "bench" / "results"


def _workload(pages: int, model_cfg, seed: int, prefix: str = "") -> list[list[tuple[str, dict, object]]]:
    from docpipe.bench.workload import engine_request, mineru_synthetic
    from inference.sampling import SamplingParams

    ids = (model_cfg.vision_start_token_id, model_cfg.image_token_id, model_cfg.vision_end_token_id)
    out = []
    for page in mineru_synthetic(pages, seed):
        out.append([(f"{prefix}p{r.page}-{i}-{r.kind}", engine_request(r, ids, seed),
                     SamplingParams(temperature=0.0, max_tokens=r.output_tokens, ignore_eos=True))
                    for i, r in enumerate(page)])
    return out


def _latencies(results) -> dict:
    """TTFT and TPOT p50/p99 of results (TPOT of requests with more than one token)."""
    from inference.router.metrics import percentile

    ttft = [r["ttft_s"] for r in results]
    tpot = [r["tpot_s"] for r in results if len(r["token_ids"]) > 1]
    return {"ttft_s": {"p50": percentile(ttft, 50), "p99": percentile(ttft, 99)},
            "tpot_s": {"p50": percentile(tpot, 50), "p99": percentile(tpot, 99)}}


def _summary(results: dict, wall_s: float, pages: int) -> dict:
    tokens = sum(len(r["token_ids"]) for r in results.values())
    return {"wall_s": wall_s, "output_tokens": tokens, "output_tokens_per_s": tokens / wall_s,
            "pages_per_s": pages / wall_s, **_latencies(results.values())}


def per_kind(results: dict) -> dict:
    """TPOT and TTFT p50/p99 per request kind (the last part of a workload request id: layout, text,
    title, table, equation): short outputs carry a handoff or a prefill stall over few tokens."""
    kinds: dict = {}
    for rid, r in results.items():
        kinds.setdefault(rid.rsplit("-", 1)[-1], []).append(r)
    return {kind: {"n": len(rs), "tokens_mean": sum(len(r["token_ids"]) for r in rs) / len(rs), **_latencies(rs)}
            for kind, rs in sorted(kinds.items())}


def kind_table(report: dict) -> str:
    lines = ["TPOT p50/p99 ms by kind      monolithic      disaggregated   tokens"]
    mono, pd = report["per_kind"]["monolithic"], report["per_kind"]["disaggregated"]
    for kind in mono:
        m, d = mono[kind]["tpot_s"], pd.get(kind, {}).get("tpot_s", {"p50": 0.0, "p99": 0.0})
        lines.append(f"  {kind:<24} {m['p50'] * 1e3:6.1f} {m['p99'] * 1e3:6.1f}   {d['p50'] * 1e3:6.1f} "
                     f"{d['p99'] * 1e3:6.1f}   {mono[kind]['tokens_mean']:6.0f}")
    return "\n".join(lines)


def monolithic_config(model: str, layout, engine_kw: dict):
    """The monolithic side's EngineConfig: the layout's prefill role settings, with everything a
    whole engine captures at start (decode and sampler graphs included; engine_kw may override)."""
    from inference.disagg.worker import engine_config

    return engine_config(model, layout.role("prefill"), role="monolithic", **engine_kw)


def run_monolithic(model: str, layout, pages, engine_kw: dict, warmup=()) -> tuple[dict, float]:
    from inference.engine.engine import LLMEngine
    from inference.gc_pauses import frozen

    engine = LLMEngine(monolithic_config(model, layout, engine_kw))
    with frozen():  # as the PD role processes run (process.run_worker): no full-collection pauses
        if warmup:  # untimed: kernel compilation, graph capture, attention plans
            _drive_engine(engine, warmup)
        result = _drive_engine(engine, pages)
    # give back this engine's KV pool (the caching allocator would keep it) for whatever runs next
    del engine
    import gc
    gc.collect()
    import torch
    if torch.cuda.is_available():
        torch.cuda.empty_cache()
    return result


def _drive_engine(engine, pages) -> tuple[dict, float]:
    results, t0 = {}, time.perf_counter()
    for page in pages:
        engine.add_request(*page[0])
    blocks = {page[0][0]: page[1:] for page in pages}
    while engine.has_unfinished_requests():
        for out in engine.step():
            results[out.request_id] = {"token_ids": out.token_ids, "ttft_s": out.ttft_s, "tpot_s": out.tpot_s}
            for rid, req, sp in blocks.pop(out.request_id, []):
                engine.add_request(rid, req, sp)
    return results, time.perf_counter() - t0


def run_disaggregated(model: str, layout, pages, engine_kw: dict, threads: int,
                      sharing: dict | None = None, warmup=()) -> tuple[dict, float, dict]:
    """sharing (out): {"active": whether the roles ran under MPS}."""
    from inference.disagg.cluster import Cluster

    with Cluster(model, layout, engine_kw=engine_kw, num_threads=threads) as cluster:
        if sharing is not None:
            sharing["active"] = cluster.gpu_sharing.active
        client = cluster.client()
        if warmup:
            _drive_client(client, warmup)
            client.metrics(reset=True)  # the router's latency figures describe the timed pages alone
        results, wall = _drive_client(client, pages)
        metrics = json.loads(client.metrics())
        client.close()
    return results, wall, metrics


def _drive_client(client, pages) -> tuple[dict, float]:
    from inference.disagg import protocol as P

    results, t0 = {}, time.perf_counter()
    for page in pages:
        client.submit(*page[0])
    blocks = {page[0][0]: page[1:] for page in pages}
    pending = {page[0][0] for page in pages}
    while pending:
        for rid in client.wait_any(pending, timeout_s=3600):
            pending.discard(rid)
            msg = client.results[rid]
            if isinstance(msg, P.Rejected):
                raise RuntimeError(f"request {rid} rejected: {msg.reason}")
            results[rid] = {"token_ids": msg.token_ids, "ttft_s": msg.ttft_s, "tpot_s": msg.tpot_s}
            for bid, req, sp in blocks.pop(rid, []):
                client.submit(bid, req, sp)
                pending.add(bid)
    return results, time.perf_counter() - t0


def stage_table(stages: dict) -> str:
    """The router's per-stage latency (metrics.STAGES order, then the workers' own spans) as one line each."""
    from inference.router.metrics import STAGES, WORKER_STAGES

    lines = ["disaggregated stages (ms):      p50      p99      n"]
    for name in (*STAGES, *WORKER_STAGES):
        if name in stages:
            v = stages[name]
            lines.append(f"  {name:<24} {v['p50'] * 1e3:8.1f} {v['p99'] * 1e3:8.1f} {v['n']:6d}")
    return "\n".join(lines)


def slowest_table(slowest: list[dict], rows: int = 8) -> str:
    """The requests with the highest TPOT (router's record) and where their TPOT window went: the
    transfer as the router saw it and its hops (transfer.meta.hop_spans), the decode worker's time."""
    from inference.router.metrics import KV_HOPS

    spans = ("transfer", *KV_HOPS, "decode_engine", "decode_max_step", "tpot_window")
    lines = [f"slowest TPOT (ms):  {'request':<20} {'tok':>4} {'tpot':>6} {'steps':>5} "
             + " ".join(f"{n:>15}" for n in spans)]
    for r in slowest[:rows]:
        cells = " ".join(f"{r['stages_s'][n] * 1e3:15.2f}" if n in r["stages_s"] else f"{'-':>15}" for n in spans)
        steps = r.get("decode_steps", -1)
        lines.append(f"  {'':<17} {r['request_id'][:20]:<20} {r['tokens']:4d} {r['tpot_s'] * 1e3:6.1f} "
                     f"{steps if steps >= 0 else '-':>5} {cells}")
    return "\n".join(lines)


def prealloc_line(counters: dict) -> str:
    """How requests went through the handoff: decode blocks reserved at dispatch and the KV pushed when
    the prefill ended (at once, or on a destination that came after it), or the plain flow (fallbacks)."""
    names = ("reservations", "pushed_at_prefill", "pushed_late", "reservation_fallbacks")
    return "pre-allocation: " + ", ".join(f"{n.replace('_', ' ')} {counters.get(n, 0)}" for n in names)


def bench_pd(pages: int = typer.Option(2, "--pages", help="synthetic pages"),
             model: str = typer.Option("dummy:tiny", "--model", help="dummy:tiny | dummy:mineru2.5 | checkpoint dir"),
             layout: str = typer.Option("local-cpu-1p1d", "--layout", help="disaggregated layout file or name"),
             num_kv_blocks: int = typer.Option(0, help="KV blocks per worker (0 = engine default)"),
             seed: int = typer.Option(0, help="workload seed"),
             threads: int = typer.Option(1, help="torch threads of the monolithic engine and of each PD process"),
             sm_percent: list[str] = typer.Option(None, "--sm-percent",
                                                  help="ROLE=PCT: override a role's MPS SM share (repeatable)"),
             warmup: bool = typer.Option(True, help="run one untimed page on each side first"),
             out: Path = typer.Option(None, "--out", help="JSON path (default inference/bench/results/pd_<host>.json)")) -> None:
    """Same mineru-synthetic workload, monolithic vs disaggregated."""
    import torch

    from inference.layouts import load_layout
    from inference.models.loader import load_config

    spec = load_layout(layout)
    if not spec.is_disaggregated:
        raise typer.BadParameter(f"layout {spec.name} is not disaggregated")
    for item in sm_percent or []:
        role, _, pct = item.partition("=")
        if role not in ("prefill", "decode") or not pct.isdigit() or not 1 <= int(pct) <= 100:
            raise typer.BadParameter(f"--sm-percent takes prefill=PCT or decode=PCT (1-100), got {item!r}")
        if spec.gpu_sharing.mode != "mps":
            raise typer.BadParameter(f"--sm-percent needs a layout with [gpu_sharing] mode = \"mps\" ({spec.name})")
        spec.role(role).sm_percent = int(pct)
    engine_kw = {"num_kv_blocks": num_kv_blocks} if num_kv_blocks else {}
    work = _workload(pages, load_config(model), seed)
    # one untimed page on each side first, so neither side's timings hold one-off compilation
    warm = _workload(1, load_config(model), seed + 1, prefix="warm-") if warmup else []
    torch.set_num_threads(threads)  # CPU runs: same threads per engine process on both sides (said in the JSON)
    # disaggregated first: its worker processes give all their device memory back when they exit,
    # while an engine of this process may leave some behind (allocator caches, graph pools)
    sharing: dict = {"active": False}
    pd, pd_s, router_metrics = run_disaggregated(model, spec, work, engine_kw, threads, sharing, warm)
    mono, mono_s = run_monolithic(model, spec, work, engine_kw, warm)
    same = sum(mono[r]["token_ids"] == pd[r]["token_ids"] for r in mono)
    report = {
        "command": " ".join(["docpipe", "bench", "pd"] + sys.argv[3:]) if len(sys.argv) > 2 else "docpipe bench pd",
        "model": model, "layout": spec.name, "pages": pages, "requests": len(mono),
        "device": platform.processor() or platform.machine(), "torch": torch.__version__,
        "threads_per_engine_process": threads, "warmup_pages": 1 if warmup else 0,
        "gpu_sharing": {"mode": spec.gpu_sharing.mode, "active": sharing["active"],
                        "sm_percent": {w.role: w.sm_percent for w in spec.workers}},
        "monolithic": _summary(mono, mono_s, pages), "disaggregated": _summary(pd, pd_s, pages),
        "transfer_gb_per_s": router_metrics["transfer"]["gb_per_s"], "router": router_metrics,
        "stages_s": router_metrics.get("stages_s", {}),
        "token_identical_requests": same,
        "per_kind": {"monolithic": per_kind(mono), "disaggregated": per_kind(pd)},
        "per_request": {side: {rid: {"tokens": len(r["token_ids"]), "ttft_s": r["ttft_s"], "tpot_s": r["tpot_s"]}
                               for rid, r in res.items()} for side, res in (("monolithic", mono), ("disaggregated", pd))},
    }
    report["throughput_ratio"] = report["disaggregated"]["output_tokens_per_s"] / report["monolithic"]["output_tokens_per_s"]
    path = out or RESULTS / f"pd_{socket.gethostname()}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report, indent=2))
    for name in ("monolithic", "disaggregated"):
        s = report[name]
        typer.echo(f"{name:>14}: {s['output_tokens_per_s']:8.1f} tok/s  {s['pages_per_s']:.3f} pages/s  "
                   f"TTFT p50 {s['ttft_s']['p50'] * 1e3:.0f} ms p99 {s['ttft_s']['p99'] * 1e3:.0f} ms  "
                   f"TPOT p50 {s['tpot_s']['p50'] * 1e3:.1f} ms p99 {s['tpot_s']['p99'] * 1e3:.1f} ms")
    typer.echo(kind_table(report))
    typer.echo(stage_table(router_metrics.get("stages_s", {})))
    typer.echo(slowest_table(router_metrics.get("slowest_tpot", [])))
    typer.echo(prealloc_line(router_metrics.get("counters", {})))
    typer.echo(f"transfer {report['transfer_gb_per_s']:.3f} GB/s; token-identical {same}/{len(mono)}; "
               f"gpu sharing {spec.gpu_sharing.mode} (active: {sharing['active']}); wrote {path}")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    bench_app.command("pd")(bench_pd)
