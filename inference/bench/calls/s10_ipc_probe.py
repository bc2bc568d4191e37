"""Session 10: where a pipelined cuda-ipc figure's time goes (bench transfer: 29-40 % of the device
copy while the copy through the IPC mapping alone is 100 %). One timeline per (size, count, variant):
sender send_many start, _move_many done, METAs written; receiver META read, event waited, ACK out;
sender ACK read; all as time.time() (one host clock) in us from send_many's start.
Variants: group (one event a group, as shipped) and single (send() one at a time, back to back, each its
own stream wait, copies and event). Also the GPU alone: the copies back to back into the mapping, one
synchronize at the end. Run: python3 inference/bench/calls/s10_ipc_probe.py OUT.json"""
from __future__ import annotations

import json
import multiprocessing as mp
import statistics
import sys
import time

import torch

from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport
from inference.transfer.cuda_ipc import CudaIpcReceiver, CudaIpcSender
from inference.transfer.measure import BENCH_SPEC
from inference.transfer.source import flat_bytes

MAX = 256 << 20


class TimedReceiver(CudaIpcReceiver):
    log: list = []

    def _answer_meta(self, sock, state, hdr):
        t_read = time.time()
        super()._answer_meta(sock, state, hdr)
        self.log.append((hdr.get("seq"), t_read, state.pop("t_landed", 0.0), time.time()))

    def _land_with(self, state, meta, hdr):
        super()._land_with(state, meta, hdr)
        state["t_landed"] = time.time()


def rx_proc(spec: PoolSpec, config: TransferConfig, conn) -> None:
    pool = CudaIpcReceiver.allocate_pool(spec, "cuda")
    rx = TimedReceiver(pool, config)
    conn.send(rx.start())
    while True:
        msg = conn.recv()
        if msg == "stop":
            break
        conn.send(list(TimedReceiver.log))
        TimedReceiver.log.clear()
    rx.close()


class TimedSender(CudaIpcSender):
    def __init__(self, *a, **k):
        super().__init__(*a, **k)
        self.marks: dict = {"moved": [], "meta": [], "ack": {}}

    def _move_many(self, items):
        out = super()._move_many(items)
        self.marks["moved"].append(time.time())
        return out

    def _send_meta(self, header):
        super()._send_meta(header)
        self.marks["meta"].append((header["seq"], time.time()))

    def _finish(self, seq, status, error=None):
        self.marks["ack"][seq] = time.time()
        super()._finish(seq, status, error)


def main(out_path: str) -> None:
    spec = PoolSpec(MAX // PoolSpec(1, **BENCH_SPEC).block_bytes, **BENCH_SPEC)
    config = TransferConfig(transport="cuda-ipc", token="probe")
    select_transport("cuda-ipc", config)
    ctx = mp.get_context("spawn")
    conn, child = ctx.Pipe()
    proc = ctx.Process(target=rx_proc, args=(spec, config, child), daemon=True)
    proc.start()
    address = conn.recv()
    g = torch.Generator().manual_seed(0)
    src = torch.randint(-100, 100, spec.shape, generator=g, dtype=torch.int16).view(torch.bfloat16).cuda()
    tx = TimedSender(src, config)
    tx.connect(address)
    n_meta = [0]

    def meta(k: int) -> TransferMeta:
        n_meta[0] += 1
        start = (n_meta[0] % (spec.num_blocks // k)) * k
        ids = list(range(start, start + k))
        return TransferMeta(f"p{n_meta[0]}", ids, ids, k * spec.block_size, 0, 0)

    results = []
    bb = spec.block_bytes
    for size in (4 << 20, 16 << 20, 64 << 20, 256 << 20):
        k = size // bb
        base_count = max(4, min(100, (512 << 20) // size))
        for count in (base_count, 4 * base_count):
            for variant in ("group", "single", "group", "single"):
                for _ in range(2):
                    tx.send(meta(k)).wait(60)
                time.sleep(0.002)  # the receiver logs a META after its ACK went out
                conn.send("log")
                conn.recv()  # clear the warm-up's
                tx.marks = {"moved": [], "meta": [], "ack": {}}
                t0 = time.time()
                if variant == "group":
                    handles = tx.send_many([meta(k) for _ in range(count)])
                else:
                    handles = [tx.send(meta(k)) for _ in range(count)]
                t_issued = time.time()
                bad = [h if isinstance(h, Exception) else h.wait(60) for h in handles]
                t_end = time.time()
                assert all(b == "acked" for b in bad), bad[:3]
                time.sleep(0.002)
                conn.send("log")
                rlog = conn.recv()
                us = lambda t: round((t - t0) * 1e6, 1)  # noqa: E731
                metas = [us(t) for _, t in tx.marks["meta"]]
                acks = sorted(us(t) for t in tx.marks["ack"].values())
                r_read = sorted(us(r[1]) for r in rlog)
                r_land = sorted(us(r[2]) for r in rlog)
                r_ack = sorted(us(r[3]) for r in rlog)
                gbps = count * size / (t_end - t0) / 1e9
                row = {"size_mib": size >> 20, "count": count, "variant": variant, "gbps": round(gbps, 1),
                       "total_us": us(t_end), "issued_us": us(t_issued), "moved_us": [us(t) for t in tx.marks["moved"]][:8],
                       "meta_first_last": [metas[0], metas[-1]], "rx_read_first_last": [r_read[0], r_read[-1]],
                       "rx_landed_first_last": [r_land[0], r_land[-1]], "rx_ack_first_last": [r_ack[0], r_ack[-1]],
                       "tx_ack_first_last": [acks[0], acks[-1]],
                       "rx_per_meta_us": round(statistics.median(b[3] - b[1] for b in rlog) * 1e6, 1),
                       "rx_wait_us_median": round(statistics.median(b[2] - b[1] for b in rlog) * 1e6, 1)}
                results.append(row)
                print(json.dumps(row), flush=True)
        # the GPU alone: count copies into the mapping back to back, one synchronize
        dst, s = tx.peer_pool, flat_bytes(src)
        for count in (base_count, 4 * base_count):
            slots = MAX // size
            torch.cuda.synchronize()
            t0 = time.perf_counter()
            for i in range(count):
                o = i % slots * size
                dst[o:o + size].copy_(s[o:o + size], non_blocking=True)
            torch.cuda.synchronize()
            dt = time.perf_counter() - t0
            row = {"size_mib": size >> 20, "count": count, "variant": "gpu-alone", "gbps": round(count * size / dt / 1e9, 1)}
            results.append(row)
            print(json.dumps(row), flush=True)
    tx.close()
    conn.send("stop")
    proc.join(10)
    with open(out_path, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
