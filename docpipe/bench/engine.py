"""`docpipe bench engine`: our engine vs transformers generate() on the same
dummy-weight checkpoint, in one process (see inference/bench/engine_bench.py)."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import typer

RESULTS_DIR = Path(__file__).resolve().parents[2] / "inference" / "bench" / "results"


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    bench_app.command("engine")(engine)


def engine(
    preset: str = typer.Option("mineru2.5", help="dummy preset: mineru2.5 (full shape) or tiny"),
    dtype: str = typer.Option("bfloat16"),
    device: str = typer.Option("cuda"),
    mode: str = typer.Option("graph", help="graph | eager"),
    concurrency: int = typer.Option(256, help="requests in the decode-throughput run"),
    decode_tokens: int = typer.Option(512, help="output tokens per request in decode runs"),
    layout_pages: int = typer.Option(64, help="1036x1036 pages in the prefill run"),
    hf_batch: int = typer.Option(64, help="transformers generate() batch"),
    hf_tokens: int = typer.Option(128, help="transformers generate() new tokens"),
    fp32_check: bool = typer.Option(True, help="exact greedy tokens vs transformers in fp32"),
    out: Path = typer.Option(None, help="JSON path (default inference/bench/results/engine_<device>.json)"),
) -> None:
    """Decode TPOT, decode throughput, layout prefill pages/s, logits error: ours vs transformers."""
    from inference.bench.engine_bench import BenchSpec, run

    spec = BenchSpec(preset=preset, dtype=dtype, device=device, mode=mode, concurrency=concurrency,
                     decode_tokens=decode_tokens, layout_pages=layout_pages, hf_batch=hf_batch,
                     hf_tokens=hf_tokens, fp32_check=fp32_check)
    res = run(spec, "docpipe bench engine " + " ".join(sys.argv[3:]))
    out = out or RESULTS_DIR / f"engine_{device.split(':')[0]}_{preset}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=1, default=str))
    print_table(res)
    typer.echo(f"wrote {out}")
    if res.get("errors"):
        typer.echo(f"sections with errors: {sorted(res['errors'])}", err=True)
        raise typer.Exit(1)


def print_table(res: dict) -> None:
    ours, hf, ok = res.get("ours", {}), res.get("hf", {}), res.get("correctness", {})
    b = res["spec"]["hf_batch"]

    def f(x, fmt="{:.2f}"):
        return fmt.format(x) if isinstance(x, (int, float)) else "-"

    rows = [
        ("decode TPOT batch 1 (ms)", ours.get("bs1_tpot_ms"), hf.get("bs1_tpot_ms")),
        ("decode tok/s batch 1", ours.get("bs1_tok_per_s"), hf.get("bs1_tok_per_s")),
        (f"decode tok/s, ours {ours.get('concurrency', '-')} concurrent / hf batch {b}", ours.get("tok_per_s"), hf.get(f"bs{b}_tok_per_s")),
        ("  ours decode phase only (tok/s)", ours.get("decode_phase_tok_per_s"), None),
        ("layout prefill pages/s (ours) | hf TTFT ms", ours.get("layout_prefill_pages_per_s"), hf.get("layout_ttft_ms")),
    ]
    typer.echo(f"{'metric':58} {'ours':>12} {'transformers':>14} {'ratio':>8}")
    for name, a, h in rows:
        ratio = a / h if isinstance(a, (int, float)) and isinstance(h, (int, float)) and h else None
        if "TPOT" in name and ratio:
            ratio = 1 / ratio  # lower is better: show speed-up
        typer.echo(f"{name:58} {f(a):>12} {f(h):>14} {f(ratio):>8}")
    typer.echo(f"teacher-forced logits rel err ({ok.get('dtype')}): {f(ok.get('teacher_forced_logits_rel_err'), '{:.2e}')}, "
               f"layout page {f(ok.get('layout_page_teacher_forced_logits_rel_err'), '{:.2e}')}; "
               f"fp32 greedy tokens identical: {ok.get('fp32_greedy_tokens_identical')}")
    typer.echo(f"peak memory {f(ours.get('peak_memory_GiB'))} GiB, KV pool {f(ours.get('kv_pool_GiB'))} GiB "
               f"({ours.get('num_kv_blocks')} blocks); ceilings {res.get('ceilings')}")
    if "layout_prefill_kernels" in ours:  # DOCPIPE_PROFILE_KERNELS=1
        k = ours["layout_prefill_kernels"]
        typer.echo(f"layout prefill kernels {k['device_kernel_ms']:.0f} ms ({k['kernel_share_of_wall']:.2f} of the pass); top:")
        from inference.bench.kernel_profile import top_lines
        typer.echo("\n".join(top_lines(k, 15)))
