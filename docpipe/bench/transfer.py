"""`docpipe bench transfer`: every transport usable here, sizes 64 KiB to
256 MiB, side by side with the raw copy of the same bytes (memcpy for shm, a
plain socket loop for tcp, a device copy for cuda-ipc), in one process run.
--peers dlslime adds DLSlime's TCP endpoint beside tcp, compared two ways:
its write+wait against our send() (both end when the bytes left the source:
a DLSlime write future completes when its socket write is done) and against
our send+ACK (the KV landed). Prints a table; writes every figure, the device, versions and the command as
JSON to --out (default inference/bench/results/transfer_<host>.json)."""
from __future__ import annotations

import json
import os
import secrets
import socket
import statistics
import sys
import time
from dataclasses import asdict
from pathlib import Path

import typer

from inference.bench.machine import device_name, versions

DEFAULT_SIZES = "64K,1M,4M,16M,64M,256M"
_UNITS = {"K": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _parse_size(text: str) -> int:
    text = text.strip().upper().removesuffix("IB").removesuffix("B")
    return int(float(text[:-1]) * _UNITS[text[-1]]) if text[-1] in _UNITS else int(text)


def _label(n: int) -> str:
    return f"{n >> 20} MiB" if n >= 1 << 20 else f"{n >> 10} KiB"


MIN_BUFFER_BYTES = 256 << 20


def _counts(n: int) -> tuple[int, int]:
    """(back-to-back count, one-at-a-time count): ~2 GiB (8 to 256 transfers) and ~64 MiB a figure.
    The back-to-back figure is a throughput: with 4 transfers of 256 MiB (session 9's ~512 MiB) the
    pipeline's fill and drain (first move, last ACK: ~0.4 ms on the H200) weighed as much as the
    copies themselves."""
    return max(8, min(256, (2 << 30) // n)), max(3, min(30, (64 << 20) // n))


def _peer(name: str, transports: list[str]):
    """(transport it stands beside, factory) for an outside system's endpoint."""
    if name != "dlslime":
        raise typer.BadParameter(f"unknown peer {name!r}; known: dlslime")
    from inference.transfer.peer_dlslime import DlslimeTcpPeer
    return "tcp", DlslimeTcpPeer


def run_bench(transports: list[str], sizes: list[int], repeat: int, peers: list[str] = ()) -> dict:
    from inference.transfer import TransferConfig, available_transports
    from inference.transfer.measure import BASELINES, TransportPeer

    peer_specs = {p: _peer(p, transports) for p in peers}  # unknown names fail before anything starts
    config = TransferConfig(token=secrets.token_hex(16))
    avail = available_transports(config)
    rows, skipped = [], {n: avail.get(n, "unknown transport") for n in transports if avail.get(n, "x") is not None}
    # every side cycles through at least 256 MiB: a buffer of one small size would stay in the caches
    # (4 MiB alone: a cache-hot memcpy at ~3x the bandwidth of one that reads memory)
    buffer = max(max(sizes), MIN_BUFFER_BYTES)
    for name in [n for n in transports if n not in skipped]:
        peer = TransportPeer(name, buffer, TransferConfig(transport=name, token=config.token))
        base_name, make_base = BASELINES.get(name, (None, None))
        base = make_base(buffer) if make_base else None
        peer_objs = {}
        for p, (beside, factory) in peer_specs.items():
            if beside == name:
                try:
                    peer_objs[p] = factory(buffer)
                except Exception as e:  # not installed, or its native library is missing
                    skipped[f"peer {p}"] = repr(e)[:300]
        try:
            for n in sizes:
                count, single = _counts(n)
                ours, raw, mapped, other = [], [], [], {p: [] for p in peer_objs}
                for _ in range(repeat):  # interleaved so load drift hits every side alike
                    ours.append(asdict(peer.measure(n, count, single)))
                    if base is not None:
                        raw.append(asdict(base.measure(n, count, single)))
                    if (fig := peer.mapped_copy(n, count, single)) is not None:
                        mapped.append(asdict(fig))
                    for p, obj in peer_objs.items():
                        other[p].append(asdict(obj.measure(n, count, single)))
                rows.append({"transport": name, "size_bytes": n, "count": count, "single_count": single,
                             "ours": ours, "baseline": base_name, "baseline_figures": raw, "peers": other,
                             **({"mapped_copy": mapped} if mapped else {})})
        finally:
            peer.close()
            if base is not None:
                base.close()
            for obj in peer_objs.values():
                obj.close()
    return {"rows": rows, "unavailable": skipped}


def _median(figs: list[dict], key: str) -> float | None:
    return statistics.median(f[key] for f in figs) if figs else None


def summarize(rows: list[dict]) -> None:
    for r in rows:
        for key in ("pipelined_gbps", "single_gbps", "latency_ms_p50"):
            r[f"ours_{key}"] = _median(r["ours"], key)
            r[f"baseline_{key}"] = _median(r["baseline_figures"], key)
        sent = [f for f in r["ours"] if f.get("sent_gbps") is not None]
        r["ours_sent_gbps"] = _median(sent, "sent_gbps")
        b = r["baseline_pipelined_gbps"]
        r["ratio_pipelined"] = r["ours_pipelined_gbps"] / b if b else None
        if r.get("mapped_copy"):  # cuda-ipc: the device copy into the receiver's mapped pool
            r["mapped_copy_gbps"] = _median(r["mapped_copy"], "pipelined_gbps")
            r["ratio_mapped_copy"] = r["mapped_copy_gbps"] / b if b else None
        r["ratio_single"] = r["ours_single_gbps"] / r["baseline_single_gbps"] if b else None
        for p, figs in r.get("peers", {}).items():
            r[f"peer_{p}_single_gbps"] = _median(figs, "single_gbps")
            r[f"ratio_vs_{p}_single"] = r["ours_single_gbps"] / r[f"peer_{p}_single_gbps"]
            # like for like: a DLSlime write future completes when its socket write is done, as our send() returns
            sent_ratio = r["ours_sent_gbps"] / r[f"peer_{p}_single_gbps"] if r["ours_sent_gbps"] else None
            r[f"ratio_vs_{p}_sent"] = sent_ratio


def print_table(rows: list[dict]) -> None:
    head = ("transport", "size", "GB/s", "GB/s 1-at-a-time", "p50 ms", "baseline", "base GB/s", "base p50 ms", "ratio", "ratio 1-at-a-time")
    print("  ".join(f"{h:>12}" for h in head))

    def f(v, fmt):
        return "-" if v is None else format(v, fmt)
    for r in rows:
        cells = (r["transport"], _label(r["size_bytes"]), f(r["ours_pipelined_gbps"], ".2f"), f(r["ours_single_gbps"], ".2f"),
                 f(r["ours_latency_ms_p50"], ".3f"), r["baseline"] or "-", f(r["baseline_pipelined_gbps"], ".2f"),
                 f(r["baseline_latency_ms_p50"], ".3f"), f(r["ratio_pipelined"], ".0%"), f(r["ratio_single"], ".0%"))
        print("  ".join(f"{c:>12}" for c in cells))
    for r in rows:
        if r.get("mapped_copy_gbps") is not None:
            print(f"{r['transport']:>12}  {_label(r['size_bytes']):>12}  device copy into the receiver's mapped pool "
                  f"{r['mapped_copy_gbps']:.2f} GB/s ({f(r['ratio_mapped_copy'], '.0%')} of the plain device copy)")
        for p in r.get("peers", {}):
            print(f"{r['transport']:>12}  {_label(r['size_bytes']):>12}  {p} write+wait {r[f'peer_{p}_single_gbps']:.2f} GB/s;"
                  f" ours send() {f(r['ours_sent_gbps'], '.2f')} GB/s ({f(r[f'ratio_vs_{p}_sent'], '.0%')}),"
                  f" ours send+ACK {r['ours_single_gbps']:.2f} GB/s ({r[f'ratio_vs_{p}_single']:.0%})")


def register(app: typer.Typer, bench_app: typer.Typer) -> None:
    @bench_app.command("transfer")
    def transfer(
        transports: str = typer.Option("shm,tcp,cuda-ipc,rdma", help="comma-separated transport names"),
        sizes: str = typer.Option(DEFAULT_SIZES, help="comma-separated transfer sizes (K, M, G suffixes)"),
        repeat: int = typer.Option(3, min=1, help="measurements per size; the table shows medians"),
        peers: str = typer.Option("", help="outside endpoints measured beside ours: dlslime (beside tcp)"),
        out: Path = typer.Option(None, help="JSON output (default inference/bench/results/transfer_<host>.json)"),
    ) -> None:
        """KV transfer GB/s and latency per transport, against the raw copy."""
        size_list = [_parse_size(s) for s in sizes.split(",") if s.strip()]
        names = [t.strip() for t in transports.split(",") if t.strip()]
        started, load = time.time(), os.getloadavg()
        result = run_bench(names, size_list, repeat, [p.strip() for p in peers.split(",") if p.strip()])
        summarize(result["rows"])
        print_table(result["rows"])
        for name, why in result["unavailable"].items():
            print(f"skipped {name}: {why}")
        host = socket.gethostname()
        out = out or Path("inference/bench/results") / f"transfer_{host}.json"
        doc = {"command": " ".join(["docpipe", "bench", "transfer", *sys.argv[3:]]) if len(sys.argv) > 2 else "docpipe bench transfer",
               "argv": sys.argv, "host": host, "device": device_name(), "versions": versions("numpy"),
               "started_unix_s": started, "wall_s": time.time() - started,
               "loadavg_before": load, "loadavg_after": os.getloadavg(), **result}
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(doc, indent=1) + "\n")
        print(f"wrote {out}")
