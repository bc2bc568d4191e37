"""Session 11: where the cuda-ipc grouped path spends its host time (which side bounds it).
Per run of COUNT back-to-back transfers (one send_many, as bench transfer sends): wall time; on the
sender, time in _prepare, waiting for room in _reserve, _move_many, the METAS writes, and in the
ACK reader's handling; on the receiver, busy time in _answer_metas and within it the frame's event
wait. time.perf_counter sums (a few us of probe cost a chunk). Variants: max_inflight 64 (default)
and 256. Run: python3 inference/bench/calls/s11_ipc_busy.py OUT.json"""
from __future__ import annotations

import json
import os
import multiprocessing as mp
import sys
import time
from collections import defaultdict

import torch

from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport
from inference.transfer.cuda_ipc import CudaIpcReceiver, CudaIpcSender
from inference.transfer.measure import BENCH_SPEC

MAX = 256 << 20
T = defaultdict(float)


def timed(cls, name):
    fn = getattr(cls, name)

    def wrapper(self, *a, **k):
        t = time.perf_counter()
        try:
            return fn(self, *a, **k)
        finally:
            T[name] += time.perf_counter() - t
    setattr(cls, name, wrapper)


class BusyReceiver(CudaIpcReceiver):
    pass


for _n in ("_answer_metas", "_land_frame"):
    timed(BusyReceiver, _n)


class BusySender(CudaIpcSender):
    pass


for _n in ("_prepare", "_reserve", "_move_many", "_send_encoded", "_on_frame"):
    timed(BusySender, _n)


def rx_proc(spec: PoolSpec, config: TransferConfig, conn) -> None:
    rx = BusyReceiver(CudaIpcReceiver.allocate_pool(spec, "cuda"), config)
    conn.send(rx.start())
    while True:
        msg = conn.recv()
        if msg == "stop":
            break
        while rx.recv(timeout_s=0) is not None:
            pass
        conn.send(dict(T))
        T.clear()
    rx.close()


def main(out_path: str) -> None:
    spec = PoolSpec(MAX // PoolSpec(1, **BENCH_SPEC).block_bytes, **BENCH_SPEC)
    rows = []
    for inflight in [int(v) for v in os.environ.get("BUSY_INFLIGHT", "64,256").split(",")]:
        config = TransferConfig(transport="cuda-ipc", token="probe", max_inflight=inflight)
        select_transport("cuda-ipc", config)
        ctx = mp.get_context("spawn")
        conn, child = ctx.Pipe()
        proc = ctx.Process(target=rx_proc, args=(spec, config, child), daemon=True)
        proc.start()
        address = conn.recv()
        g = torch.Generator().manual_seed(0)
        src = torch.randint(-100, 100, spec.shape, generator=g, dtype=torch.int16).view(torch.bfloat16).cuda()
        tx = BusySender(src, config)
        tx.connect(address)
        n_meta = [0]

        def meta(k: int) -> TransferMeta:
            n_meta[0] += 1
            start = (n_meta[0] % (spec.num_blocks // k)) * k
            ids = list(range(start, start + k))
            return TransferMeta(f"p{n_meta[0]}", ids, ids, k * spec.block_size, 0, 0)

        for size in (1 << 20, 4 << 20, 16 << 20):
            k, count = size // spec.block_bytes, 256 if size < (16 << 20) else 128
            for rep in range(3):
                for _ in range(2):
                    tx.send(meta(k)).wait(60)
                time.sleep(0.002)
                conn.send("log")
                conn.recv()
                metas = [meta(k) for _ in range(count)]
                T.clear()
                t0 = time.perf_counter()
                handles = tx.send_many(metas)
                bad = [h if isinstance(h, Exception) else h.wait(60) for h in handles]
                wall = time.perf_counter() - t0
                assert all(b == "acked" for b in bad), bad[:3]
                tx_t = dict(T)
                time.sleep(0.002)
                conn.send("log")
                rx_t = conn.recv()
                per = lambda d: {k: round(v / count * 1e6, 2) for k, v in d.items()}  # noqa: E731
                row = {"copy_mode": os.environ.get("DOCPIPE_CUDA_IPC_COPY", ""), "inflight": inflight, "size_mib": size >> 20, "count": count, "rep": rep,
                       "us_per_transfer": round(wall / count * 1e6, 2), "gbps": round(count * size / wall / 1e9, 1),
                       "sender_us": per(tx_t), "receiver_us": per(rx_t)}
                rows.append(row)
                print(json.dumps(row), flush=True)
        tx.close()
        conn.send("stop")
        proc.join(10)
    with open(out_path, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
