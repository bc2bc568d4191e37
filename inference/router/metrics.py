"""Router metrics: counters, queue gauges, TTFT/TPOT percentiles, transfer
throughput; exported as JSON and as Prometheus text.

Latency samples are kept in bounded windows (the last WINDOW requests), so
p50/p99 describe recent traffic and memory stays flat on long runs.
"""
from __future__ import annotations

import json
import math
from collections import Counter, deque

WINDOW = 10_000  # latency samples kept per series


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0.0 when empty."""
    data = sorted(values)
    if not data:
        return 0.0
    k = max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))
    return float(data[k])


class RouterMetrics:
    def __init__(self):
        self.counters: Counter = Counter()  # submitted, completed, retries, rejected_<reason>
        self.ttft_s: deque = deque(maxlen=WINDOW)  # submit -> first token
        self.tpot_s: deque = deque(maxlen=WINDOW)  # per request mean after the first token
        self.transfer_bytes = 0  # KV bytes moved, all time
        self.transfer_s = 0.0  # seconds spent in transfers (sum over transfers)
        self.gauges: dict[str, float] = {}  # set by the router before export
        self.workers: dict[str, dict[str, float]] = {}  # worker name -> its gauges (free_blocks, queued_tokens, alive)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def observe_transfer(self, num_bytes: int, seconds: float) -> None:
        self.transfer_bytes += num_bytes
        self.transfer_s += max(seconds, 0.0)

    @property
    def transfer_gb_per_s(self) -> float:
        return self.transfer_bytes / self.transfer_s / 1e9 if self.transfer_s > 0 else 0.0

    def snapshot(self) -> dict:
        return {
            "counters": dict(self.counters),
            "gauges": dict(self.gauges),
            "workers": {k: dict(v) for k, v in self.workers.items()},
            "ttft_s": {"p50": percentile(self.ttft_s, 50), "p99": percentile(self.ttft_s, 99), "n": len(self.ttft_s)},
            "tpot_s": {"p50": percentile(self.tpot_s, 50), "p99": percentile(self.tpot_s, 99), "n": len(self.tpot_s)},
            "transfer": {"bytes": self.transfer_bytes, "seconds": self.transfer_s, "gb_per_s": self.transfer_gb_per_s},
        }

    def to_json(self) -> str:
        return json.dumps(self.snapshot(), sort_keys=True)

    def to_prometheus(self) -> str:
        snap, lines = self.snapshot(), []

        def emit(name: str, kind: str, value: float, labels: str = "") -> None:
            if not any(line.startswith(f"# TYPE {name} ") for line in lines):
                lines.append(f"# TYPE {name} {kind}")
            lines.append(f"{name}{labels} {value}")

        for key, value in sorted(snap["counters"].items()):
            if key.startswith("rejected_"):
                emit("docpipe_router_rejected_total", "counter", value, f'{{reason="{key[9:]}"}}')
            else:
                emit(f"docpipe_router_{key}_total", "counter", value)
        for key, value in sorted(snap["gauges"].items()):
            emit(f"docpipe_router_{key}", "gauge", value)
        for worker, values in sorted(snap["workers"].items()):
            for key, value in sorted(values.items()):
                emit(f"docpipe_worker_{key}", "gauge", value, f'{{worker="{worker}"}}')
        for series in ("ttft_s", "tpot_s"):
            name = f"docpipe_router_{series.removesuffix('_s')}_seconds"
            for q in ("p50", "p99"):
                emit(name, "gauge", snap[series][q], f'{{quantile="{q[1:]}"}}')
        emit("docpipe_router_transfer_bytes_total", "counter", self.transfer_bytes)
        emit("docpipe_router_transfer_gb_per_s", "gauge", self.transfer_gb_per_s)
        return "\n".join(lines) + "\n"
