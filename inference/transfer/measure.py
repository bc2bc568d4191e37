"""Measurements behind `docpipe bench transfer`: each transport against the
raw copy of the same bytes, in one process run, interleaved per size.

Transport side: the receiver runs in a spawned process (its pool allocated the
transport's way); this process sends `count` transfers of one run of blocks.
  pipelined: `count` sends issued back to back (up to max_inflight unacked;
             one send_many where the transport moves groups, as the prefill
             worker sends what queued up), then every ack awaited -> GB/s;
  single:    send + wait for the ack, one at a time -> latency (p50) and GB/s;
  sent:      send() alone, one at a time (acks awaited after the loop): the
             time until the KV left the source, which is what a DLSlime
             TcpEndpoint write future measures (it completes in the handler
             of its asio socket write; nothing comes back from the peer).
The metas (block ids) are built before a clock starts. Every side cycles through the whole 256 MiB buffer (transfer i uses slot
i mod slots), so neither ours nor the baseline copies one cache-hot 4 MiB over
and over: a KV transfer moves freshly computed blocks to other blocks.
Baselines: memcpy (torch copy_ between two warm buffers) for shm; a plain
socket loop over loopback (sendall n bytes, 1-byte ack; the loop of the
reference script shared/bench/dlslime_tcp_peer.py) for tcp; a device-to-device
copy for cuda-ipc; none for rdma.
"""
from __future__ import annotations

import ctypes
import dataclasses
import multiprocessing as mp
import socket
import statistics
import struct
import time
from dataclasses import dataclass

import torch

from inference.sampling import SamplingParams
from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport
from inference.transfer.source import flat_bytes
from inference.transfer.wire import recv_exact_into

# 64 KiB blocks: 8 layers x 2 x 16 tokens x 2 heads x 64 dim x bf16
BENCH_SPEC = dict(num_layers=8, block_size=16, num_kv_heads=2, head_dim=64, dtype="bfloat16")
# what a PD request's META carries (the prefill worker sends its SamplingParams as a dict): from session
# 11 on; before, an empty dict, which skipped the encoder's non-finite-float search (a null: seed None)
_SAMPLING_STATE = dataclasses.asdict(SamplingParams())


@dataclass
class Figure:
    pipelined_gbps: float  # count transfers back to back / elapsed
    single_gbps: float  # size / median one-at-a-time time (to the ACK: the KV landed)
    latency_ms_p50: float  # median one-at-a-time time
    sent_gbps: float | None = None  # size / median time until send() returns (the KV left the source), one at a time


def _receiver_proc(name: str, spec: PoolSpec, config: TransferConfig, device: str, conn, staged: bool = False) -> None:
    t = select_transport(name, config)
    pool = torch.zeros(spec.shape, dtype=spec.torch_dtype, device=device) if staged else t.receiver_cls.allocate_pool(spec, device)
    rx = t.receiver_cls(pool, config)
    conn.send(rx.start())
    while not conn.poll(0.2):  # drain now and then: waking per meta would cost a switch
        while rx.recv(timeout_s=0) is not None:
            pass
    rx.close()


class TransportPeer:
    """Sender here, receiver in a spawned process, for one transport."""

    def __init__(self, name: str, max_bytes: int, config: TransferConfig, spec_kw: dict = BENCH_SPEC, staged: bool = False):
        """staged: the receiver's pool is a plain tensor, not the transport's
        (shm: staging copy + ACK instead of the self-acked path)."""
        self.block_bytes = PoolSpec(1, **spec_kw).block_bytes
        self.spec = PoolSpec(max_bytes // self.block_bytes, **spec_kw)
        device = "cuda" if name == "cuda-ipc" else "cpu"
        rx_device = "cuda:1" if device == "cuda" and torch.cuda.device_count() > 1 else device
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_receiver_proc, args=(name, self.spec, config, rx_device, child, staged), daemon=True)
        self._proc.start()
        address = self._conn.recv()
        g = torch.Generator().manual_seed(0)
        src = torch.randint(-100, 100, self.spec.shape, generator=g, dtype=torch.int16).view(torch.bfloat16)
        self._tx = select_transport(name, config).sender_cls(src.to(device), config)
        self._tx.connect(address)
        self._n, self.name = 0, name

    def _meta(self, num_blocks: int) -> TransferMeta:
        self._n += 1
        start = (self._n % (self.spec.num_blocks // num_blocks)) * num_blocks
        ids = list(range(start, start + num_blocks))
        return TransferMeta(f"b{self._n}", ids, ids, num_blocks * self.spec.block_size, 0, 0, dict(_SAMPLING_STATE))

    def _send(self, num_blocks: int):
        return self._tx.send(self._meta(num_blocks))

    def measure(self, num_bytes: int, count: int, single_count: int) -> Figure:
        """The metas (a request's block ids: what the caller hands the transport) are built before
        each clock starts; everything the transport does with them is timed."""
        k = num_bytes // self.block_bytes
        for _ in range(2):  # warm: page faults, socket buffers
            self._send(k).wait(60)
        metas = [self._meta(k) for _ in range(count)]
        t0 = time.perf_counter()
        if self._tx.batches_sends:  # as the prefill worker sends what queued up: one group
            handles = self._tx.send_many(metas)
        else:
            handles = [self._tx.send(m) for m in metas]
        bad = [s for s in (repr(h) if isinstance(h, Exception) else h.wait(120) for h in handles) if s != "acked"]
        pipelined = count * num_bytes / (time.perf_counter() - t0) / 1e9
        times = []
        for meta in [self._meta(k) for _ in range(single_count)]:
            t0 = time.perf_counter()
            status = self._tx.send(meta).wait(60)
            if status != "acked":
                bad.append(status)
            times.append(time.perf_counter() - t0)
        sent, handles = [], []
        for meta in [self._meta(k) for _ in range(single_count)]:  # what DLSlime's write().wait() times: its future completes when the socket write is done
            t0 = time.perf_counter()
            handles.append(self._tx.send(meta))
            sent.append(time.perf_counter() - t0)
        bad += [s for s in (h.wait(120) for h in handles) if s != "acked"]
        if bad:
            raise RuntimeError(f"benchmark transfers failed: {bad[:3]}")
        p50 = statistics.median(times)
        return Figure(pipelined, num_bytes / p50 / 1e9, p50 * 1e3, num_bytes / statistics.median(sent) / 1e9)

    def mapped_copy(self, num_bytes: int, count: int, single_count: int) -> Figure | None:
        """cuda-ipc only (else None): the device-copy baseline's loop (copy_, synchronize) from this
        pool into the receiver's pool through this process's IPC mapping of it. On one GPU, against
        the plain device copy, it says whether the mapped memory itself copies slower, and against
        ours what the control path costs; with two GPUs the receiver's pool is on the other one and
        this is a peer copy."""
        if self.name != "cuda-ipc":
            return None
        return _device_copy_loop(flat_bytes(self._tx.pool), self._tx.peer_pool, num_bytes, count, single_count)

    def close(self) -> None:
        self._tx.close()
        self._conn.send("stop")
        self._proc.join(10)


def _time_loop(step, count: int, single_count: int, num_bytes: int, max_bytes: int) -> Figure:
    """step(offset) copies num_bytes at that offset; offsets cycle like slots."""
    slots = max_bytes // num_bytes
    for i in range(2):
        step(i % slots * num_bytes)
    t0 = time.perf_counter()
    for i in range(count):
        step(i % slots * num_bytes)
    bulk = count * num_bytes / (time.perf_counter() - t0) / 1e9
    times = []
    for i in range(single_count):
        t0 = time.perf_counter()
        step(i % slots * num_bytes)
        times.append(time.perf_counter() - t0)
    p50 = statistics.median(times)
    return Figure(bulk, num_bytes / p50 / 1e9, p50 * 1e3)


def _device_copy_loop(src: torch.Tensor, dst: torch.Tensor, num_bytes: int, count: int, single_count: int) -> Figure:
    """copy_ then synchronize, src -> dst (flat bytes of CUDA memory, the second maybe a peer's
    mapping), offsets cycling through the smaller of the two."""
    n, sync = num_bytes, torch.cuda.synchronize
    return _time_loop(lambda o: (dst[o:o + n].copy_(src[o:o + n]), sync()), count, single_count, n,
                      min(src.numel(), dst.numel()))


class MemcpyBaseline:
    """Copy between two warm buffers of this process. CPU: the better of torch
    copy_ and libc memmove (one thread) per figure, so the bar is the faster
    raw copy; GPU: torch copy_ device to device."""

    def __init__(self, max_bytes: int, device: str = "cpu"):
        self.device = device
        self.src = torch.randint(0, 255, (max_bytes,), dtype=torch.uint8, device=device)
        self.dst = torch.zeros(max_bytes, dtype=torch.uint8, device=device)

    def measure(self, num_bytes: int, count: int, single_count: int) -> Figure:
        src, dst, n = self.src, self.dst, num_bytes
        if self.device != "cpu":
            return _device_copy_loop(src, dst, n, count, single_count)
        torch_copy = _time_loop(lambda o: dst[o:o + n].copy_(src[o:o + n]), count, single_count, n, src.numel())
        s_ptr, d_ptr = src.data_ptr(), dst.data_ptr()
        memmove = _time_loop(lambda o: ctypes.memmove(d_ptr + o, s_ptr + o, n), count, single_count, n, src.numel())
        return Figure(max(torch_copy.pipelined_gbps, memmove.pipelined_gbps), max(torch_copy.single_gbps, memmove.single_gbps),
                      min(torch_copy.latency_ms_p50, memmove.latency_ms_p50))

    def close(self) -> None:
        pass


def _raw_socket_server(conn, max_bytes: int) -> None:
    srv = socket.create_server(("127.0.0.1", 0))
    conn.send(srv.getsockname()[1])
    c, _ = srv.accept()
    view = memoryview(bytearray(max_bytes))
    while True:
        head = c.recv(16, socket.MSG_WAITALL)
        if len(head) < 16:
            return
        n, reps = struct.unpack("!QQ", head)
        slots = max_bytes // n
        for i in range(reps):  # rotate like the sender: no cache-hot single buffer
            o = i % slots * n
            recv_exact_into(c, view[o:o + n])
            c.sendall(b"k")


class SocketBaseline:
    """Plain socket loop over loopback: sendall(n bytes), wait a 1-byte ack."""

    def __init__(self, max_bytes: int):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_raw_socket_server, args=(child, max_bytes), daemon=True)
        self._proc.start()
        self._sock = socket.create_connection(("127.0.0.1", self._conn.recv()))
        self._sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self._data = memoryview(torch.randint(0, 255, (max_bytes,), dtype=torch.uint8).numpy())

    def measure(self, num_bytes: int, count: int, single_count: int) -> Figure:
        s, data, n = self._sock, self._data, num_bytes
        s.sendall(struct.pack("!QQ", n, count + single_count + 2))
        return _time_loop(lambda o: (s.sendall(data[o:o + n]), s.recv(1)), count, single_count, n, len(data))

    def close(self) -> None:
        self._sock.close()
        self._proc.join(10)


BASELINES = {"shm": ("memcpy", lambda n: MemcpyBaseline(n)), "tcp": ("socket-loop", lambda n: SocketBaseline(n)),
             "cuda-ipc": ("device-copy", lambda n: MemcpyBaseline(n, "cuda"))}


# 64-byte blocks: the copy of even 4096 of them is ~1 us of memcpy, so a transfer's time is its control path
CONTROL_SPEC = dict(num_layers=1, block_size=16, num_kv_heads=1, head_dim=1, dtype="bfloat16")


def control_path(name: str, block_counts: list[int], count: int = 300, staged: bool = False) -> dict[int, dict]:
    """Per-transfer host time (us, medians of `count`) of `name` for transfers of
    each number of blocks, with blocks so small that the bytes cost nothing:
    send_us = send() alone (ids -> meta -> checks, plan, copy, META out),
    round_trip_us = send + wait for the ACK (with staged=True or a
    receiver-acked transport: the receiver's META parsing, landing checks and
    ACK too). Command line: python -m inference.transfer.measure shm 16,4096 [--staged]"""
    config = TransferConfig(transport=name, token="control-path-bench", max_inflight=4 * count)  # sends alone never wait for room
    peer = TransportPeer(name, 4 * max(block_counts) * PoolSpec(1, **CONTROL_SPEC).block_bytes, config, CONTROL_SPEC, staged)
    try:
        out = {}
        for k in block_counts:
            n = k * peer.block_bytes
            fig = peer.measure(n, count, count)
            out[k] = {"round_trip_us": fig.latency_ms_p50 * 1e3, "send_us": n / fig.sent_gbps / 1e3}
        return out
    finally:
        peer.close()


if __name__ == "__main__":
    import sys

    args = [a for a in sys.argv[1:] if not a.startswith("--")]
    counts = [int(x) for x in (args[1] if len(args) > 1 else "16,4096").split(",")]
    for k, fig in control_path(args[0] if args else "shm", counts, staged="--staged" in sys.argv).items():
        print(f"{k} blocks: send {fig['send_us']:.1f} us, send+ack {fig['round_trip_us']:.1f} us")
