"""Router metrics: counters, queue gauges, TTFT/TPOT percentiles, transfer
throughput, per-stage latency of completed requests; exported as JSON and as
Prometheus text.

Stage latency: the router stamps each request at its stage marks (router
clock: submitted, prefill_sent, reserve_sent, reserved, prefill_done, decode_sent, allocated,
transfer_sent, transfer_done, decode_done); at completion every STAGES span
whose two marks are set is one sample. Workers add spans measured on their own
clocks (WORKER_STAGES: prefill worker receipt -> engine admission, engine
arrival -> first token, decode KV wait, decode engine time, and the decode worker's longest engine
step within that time: a duration but not a span, kept with the stages for its percentiles), and
the KV's hops from the transfer's stamps (KV_HOPS: the prefill worker's sender queue, the send,
the META on the wire, the receiver's wait for the copies, landed -> the decode loop). TTFT =
queue + prefill; the router's TPOT window (prefill_done -> decode_done) = handoff + decode. The
slowest requests' records also hold the decode worker's step count in decode_engine.

Latency samples are kept in bounded windows (the last WINDOW requests), so
p50/p99 describe recent traffic and memory stays flat on long runs. The
SLOWEST requests by TPOT keep their own spans (JSON only), which shows where
the p99's time went (the handoff, the wait for the KV, or the decode itself).
"""
from __future__ import annotations

import heapq
import itertools
import json
import math
from collections import Counter, deque

from inference.transfer.meta import HOP_SPANS

WINDOW = 10_000  # latency samples kept per series
SLOWEST = 16  # requests with the highest TPOT whose spans are kept

# stage name -> (from mark, to mark), router clock
STAGES = {
    "queue": ("submitted", "prefill_sent"),  # at the router until a prefill worker gets it
    "prefill": ("prefill_sent", "prefill_done"),  # wire + prefill worker (queue, vision, LM prefill)
    "reserve": ("reserve_sent", "reserved"),  # pre-allocation round trip, overlapped with the prefill
    "await_decode": ("prefill_done", "decode_sent"),  # prefilled, waiting for decode room
    "alloc": ("decode_sent", "allocated"),  # DecodeRequest -> Allocated round trip
    "transfer_request": ("allocated", "transfer_sent"),  # router turnaround
    "handoff": ("prefill_done", "transfer_sent"),  # everything between prefill and the KV send order
    "transfer": ("transfer_sent", "transfer_done"),  # TransferRequest -> TransferDone (KV moved and acked)
    "decode": ("transfer_sent", "decode_done"),  # KV send order -> all tokens decoded, as the router sees it
    "tpot_window": ("prefill_done", "decode_done"),  # what the router's TPOT divides by n - 1
}
# measured by the workers on their clocks (seconds, carried in PrefillDone / DecodeDone)
MAX_SPAN_S = 1e6  # a worker-sent span above this (or not finite) is not a measurement
KV_HOPS = HOP_SPANS  # the KV's hops (transfer.meta.hop_spans)
WORKER_STAGES = ("prefill_admit_wait", "prefill_engine", "decode_kv_wait", "decode_engine", "decode_max_step",
                 *KV_HOPS)


def percentile(values, q: float) -> float:
    """Nearest-rank percentile (q in [0, 100]); 0.0 when empty."""
    data = sorted(values)
    if not data:
        return 0.0
    k = max(0, min(len(data) - 1, math.ceil(q / 100 * len(data)) - 1))
    return float(data[k])


def worker_spans(prefilled, decoded=None) -> dict:
    """WORKER_STAGES of one request from its PrefillDone and DecodeDone
    (None: not measured; a worker sends a negative value for that, and anything not a finite
    number below MAX_SPAN_S is not a measurement either)."""
    def measured(seconds):
        return float(seconds) if type(seconds) in (int, float) and 0 <= seconds < MAX_SPAN_S else None

    spans = {"prefill_engine": prefilled.prefill_s, "prefill_admit_wait": measured(prefilled.admit_wait_s)}
    if decoded is not None:
        spans.update(decode_kv_wait=measured(decoded.kv_wait_s), decode_engine=measured(decoded.decode_s),
                     decode_max_step=measured(decoded.max_step_s))
        hops = decoded.kv_hops_s if isinstance(decoded.kv_hops_s, dict) else {}
        spans.update({name: measured(v) for name, v in hops.items() if name in KV_HOPS})
    return spans


class RouterMetrics:
    def __init__(self):
        self.counters: Counter = Counter()  # submitted, completed, retries, rejected_<reason>
        self.ttft_s: deque = deque(maxlen=WINDOW)  # submit -> first token
        self.tpot_s: deque = deque(maxlen=WINDOW)  # per request mean after the first token
        self.transfer_bytes = 0  # KV bytes moved, all time
        self.transfer_s = 0.0  # seconds spent in transfers (sum over transfers)
        self.gauges: dict[str, float] = {}  # set by the router before export
        self.workers: dict[str, dict[str, float]] = {}  # worker name -> its gauges (free_blocks, queued_tokens, alive)
        self.stages: dict[str, deque] = {name: deque(maxlen=WINDOW) for name in (*STAGES, *WORKER_STAGES)}
        self.slowest: list[tuple] = []  # min-heap of (tpot_s, arrival, request record), SLOWEST at most
        self._arrival = itertools.count()  # breaks TPOT ties (records do not compare)

    def count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n

    def observe_transfer(self, num_bytes: int, seconds: float) -> None:
        self.transfer_bytes += num_bytes
        self.transfer_s += max(seconds, 0.0)

    def observe_stages(self, marks: dict, worker_spans: dict | None = None, request_id: str = "",
                       num_tokens: int = 0, tpot_s: float | None = None, decode_steps: int = -1) -> None:
        """One completed request: its STAGES spans (marks: mark name -> router
        clock s) and the workers' own spans (name -> s; absent when not measured);
        with its TPOT, a candidate for the SLOWEST record (with the decode worker's
        engine steps in decode_engine, -1 when not measured)."""
        spans = {name: marks[end] - marks[start] for name, (start, end) in STAGES.items()
                 if start in marks and end in marks}
        spans.update({name: s for name, s in (worker_spans or {}).items() if s is not None and name in self.stages})
        for name, seconds in spans.items():
            self.stages[name].append(seconds)
        if tpot_s is not None:
            record = {"request_id": request_id, "tokens": num_tokens, "tpot_s": tpot_s, "stages_s": spans,
                      "decode_steps": decode_steps}
            item = (tpot_s, next(self._arrival), record)
            (heapq.heappush if len(self.slowest) < SLOWEST else heapq.heappushpop)(self.slowest, item)

    def reset_latency(self) -> None:
        """Empty the latency windows (TTFT, TPOT, stages, slowest); counters and the transfer
        totals (exported as Prometheus counters) stay."""
        for window in (self.ttft_s, self.tpot_s, *self.stages.values()):
            window.clear()
        self.slowest.clear()

    def export(self, fmt: str, workers, queued: int, await_decode: int, inflight: int) -> str:
        """JSON or Prometheus text, with the router's queue gauges and its workers' state as of now."""
        self.gauges.update(queued_requests=queued, await_decode_requests=await_decode, inflight_requests=inflight)
        self.workers = {w.name: {"free_blocks": w.num_free_blocks, "queued_tokens": w.queued_tokens,
                                 "running": w.num_running, "alive": int(w.alive)} for w in workers}
        return self.to_prometheus() if fmt == "prometheus" else self.to_json()

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
            "stages_s": {name: {"p50": percentile(v, 50), "p99": percentile(v, 99), "n": len(v)}
                         for name, v in self.stages.items() if v},
            "slowest_tpot": [record for *_, record in sorted(self.slowest, key=lambda item: item[:2], reverse=True)],
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
        for stage, values in sorted(snap["stages_s"].items()):
            for q in ("p50", "p99"):
                emit("docpipe_router_stage_seconds", "gauge", values[q], f'{{stage="{stage}",quantile="{q[1:]}"}}')
        emit("docpipe_router_transfer_bytes_total", "counter", self.transfer_bytes)
        emit("docpipe_router_transfer_gb_per_s", "gauge", self.transfer_gb_per_s)
        return "\n".join(lines) + "\n"
