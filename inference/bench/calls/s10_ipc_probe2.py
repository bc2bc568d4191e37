"""Session 10: the chunked cuda-ipc path (one move, one METAS frame, one ACKS frame a chunk) as a
per-chunk timeline: sender move start/end and METAS out, receiver METAS read / first landing / ACKS
out, sender's last ACK of the chunk; time.time() (one host clock) in us from send_many's start.
Variants: chunk sizes (items, bytes) and the interpreter's switch interval. Metas built before t0.
Run: python3 inference/bench/calls/s10_ipc_probe2.py OUT.json"""
from __future__ import annotations

import json
import multiprocessing as mp
import sys
import time

import torch

from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport, sender_groups
from inference.transfer.cuda_ipc import CudaIpcReceiver, CudaIpcSender
from inference.transfer.measure import BENCH_SPEC

MAX = 256 << 20


class TimedReceiver(CudaIpcReceiver):
    log: list = []

    def _answer_metas(self, sock, state, hdr):
        t_read, n = time.time(), len(hdr.get("items") or ())
        state["t_landed"] = None
        super()._answer_metas(sock, state, hdr)
        self.log.append((n, t_read, state.get("t_landed") or 0.0, time.time()))

    def _land_with(self, state, meta, hdr):
        super()._land_with(state, meta, hdr)
        if state.get("t_landed", 0) is None:
            state["t_landed"] = time.time()


def rx_proc(spec: PoolSpec, config: TransferConfig, conn) -> None:
    pool = CudaIpcReceiver.allocate_pool(spec, "cuda")
    rx = TimedReceiver(pool, config)
    conn.send(rx.start())
    while True:
        msg = conn.recv()
        if msg == "stop":
            break
        while rx.recv(timeout_s=0) is not None:
            pass
        conn.send(list(TimedReceiver.log))
        TimedReceiver.log.clear()
    rx.close()


class TimedSender(CudaIpcSender):
    marks: dict = {}

    def _move_many(self, items):
        t = time.time()
        out = super()._move_many(items)
        self.marks.setdefault("move", []).append((len(items), t, time.time()))
        return out

    def _send_frame(self, kind, header, payloads=()):
        super()._send_frame(kind, header, payloads)
        if "items" in header:
            self.marks.setdefault("metas", []).append(time.time())

    def _finish(self, seq, status, error=None):
        self.marks.setdefault("ack", {})[seq] = time.time()
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
    variants = [("8x32M", 8, 32 << 20, 0.005), ("8x32M-sw0.2ms", 8, 32 << 20, 0.0002), ("16x128M", 16, 128 << 20, 0.005),
                ("1x0", 1, 1, 0.005), ("8x32M", 8, 32 << 20, 0.005)]
    for size, count in ((4 << 20, 100), (16 << 20, 32), (64 << 20, 8), (64 << 20, 32), (256 << 20, 4)):
        k = size // bb
        for name, items, nbytes, switch in variants:
            sender_groups.CHUNK_ITEMS, sender_groups.CHUNK_BYTES = items, nbytes
            sys.setswitchinterval(switch)
            for _ in range(2):
                tx.send(meta(k)).wait(60)
            time.sleep(0.002)
            conn.send("log")
            conn.recv()
            metas = [meta(k) for _ in range(count)]
            TimedSender.marks = {}
            t0 = time.time()
            handles = tx.send_many(metas)
            bad = [h if isinstance(h, Exception) else h.wait(60) for h in handles]
            t_end = time.time()
            sys.setswitchinterval(0.005)
            assert all(b == "acked" for b in bad), bad[:3]
            time.sleep(0.002)
            conn.send("log")
            rlog = conn.recv()
            us = lambda t: round((t - t0) * 1e6)  # noqa: E731
            m = TimedSender.marks
            seqs = sorted(m["ack"])
            chunks, pos = [], 0
            for i, (n, ts, te) in enumerate(m["move"]):
                last_ack = max(m["ack"][s] for s in seqs[pos:pos + n])
                r = rlog[i] if i < len(rlog) else (0, 0, 0, 0)
                chunks.append([n, us(ts), us(te), us(m["metas"][i]), us(r[1]), us(r[2]), us(r[3]), us(last_ack)])
                pos += n
            row = {"size_mib": size >> 20, "count": count, "variant": name, "gbps": round(count * size / (t_end - t0) / 1e9, 1),
                   "total_us": us(t_end), "chunks": len(chunks),
                   "timeline[n,move0,move1,metas,rx_read,rx_land,rx_ack,tx_ack]": chunks[:3] + chunks[-2:]}
            results.append(row)
            print(json.dumps(row), flush=True)
    tx.close()
    conn.send("stop")
    proc.join(10)
    with open(out_path, "w") as f:
        json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "rows": results}, f, indent=1)


if __name__ == "__main__":
    main(sys.argv[1])
