"""`tcp`: KV bytes over the authenticated socket, any two hosts.

Each work unit is one DATA frame {seq, segs: [[dst_offset, bytes], ...]}
whose payload the sender hands to sendmsg as memoryviews of the source pool
(scatter-gather, no Python copy), and the receiver recv_into's straight into
its pool at those offsets (bounds-checked first, MSG_WAITALL). The last DATA
frame carries the META's fields too (meta, ...): once its payload landed the
receiver handles it as a META and ACKs. Units are pipelined: the
sender never waits per unit, only the META's ACK ends a transfer, and several
transfers may be unacked at once. CPU pools only (a GPU pool goes over
cuda-ipc, or is staged by the worker).

Streams: with config.tcp_streams = N the sender opens N authenticated
connections to the receiver (sender.py) and puts each transfer, whole, on the
one with the fewest unacked bytes: back-to-back sends then find free kernel
buffer space instead of waiting for one connection's window, and the
receiver drains N connections on N threads. Each stream keeps today's order
and ACK rules; across streams recv() yields transfers in landing order.
On the 2-core loopback bench, 2 streams were within noise of 1 and 4 were
slower (per-send time is CPU-bound there, not buffer-bound): default 1.
"""
from __future__ import annotations

import socket

import torch

from inference.transfer import wire
from inference.transfer.base import TransferConfig, TransferError, Transport, TransportUnavailable
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.sender_acks import Stream
from inference.transfer.source import PreparedTransfer, flat_bytes


def _cpu_bytes(t: torch.Tensor, what: str) -> memoryview:
    if t.device.type != "cpu":
        raise TransportUnavailable(f"tcp: the {what} pool is on {t.device}; tcp moves CPU pools (use cuda-ipc on one host)")
    return memoryview(flat_bytes(t).numpy())


def _sysctl_ints(path: str) -> list[int]:
    try:
        with open(path) as f:
            return [int(v) for v in f.read().split()]
    except (OSError, ValueError):
        return []


def _enlarge_send_buffer(sock: socket.socket) -> None:
    """Let the kernel take more of a transfer at once, so send() returns while
    the receiver is still draining earlier ones. Autotuning grows the send
    buffer to tcp_wmem's maximum (4 MiB here); an explicit SO_SNDBUF may be
    up to wmem_max and the kernel doubles it (8 MiB here), but it also turns
    autotuning off, so it is set only where it gives more room."""
    wmem_max, tcp_wmem = _sysctl_ints("/proc/sys/net/core/wmem_max"), _sysctl_ints("/proc/sys/net/ipv4/tcp_wmem")
    if wmem_max and len(tcp_wmem) == 3 and 2 * wmem_max[0] > tcp_wmem[2]:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, wmem_max[0])


class TcpSender(ControlSender):
    name = "tcp"

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._last_frame: dict[int, tuple] = {}  # seq -> (its stream, its last DATA frame), sent with its META
        self._pool_view: memoryview | None = None

    def _num_streams(self) -> int:
        return self.config.tcp_streams

    def _attach(self, reply: dict) -> None:
        _enlarge_send_buffer(self._sock)

    def _attach_stream(self, stream: Stream) -> None:
        _enlarge_send_buffer(stream.sock)

    def _fail(self, seq: int, error: Exception) -> bool:
        self._last_frame.pop(seq, None)  # its META never went out (e.g. its header failed to build)
        return super()._fail(seq, error)

    def _stream_for(self, seq: int) -> Stream:
        for st in self._streams:
            if seq in st.seqs:
                return st
        raise TransferError(f"tcp: transfer {seq} ended before its bytes were sent (its connection was lost or its lease ran out)")

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        if prep.src_bytes is self._pool_bytes:  # no conversion: the pool's view, made once
            if self._pool_view is None:
                self._pool_view = _cpu_bytes(self._pool_bytes, "source")
            src = self._pool_view
        else:
            src = _cpu_bytes(prep.src_bytes, "source")
        units = []
        for unit in prep.units:
            segs = [[s.dst_offset_bytes, s.num_bytes] for s in unit.segments]
            units.append((segs, [src[s.src_offset_bytes:s.src_offset_bytes + s.num_bytes] for s in unit.segments]))
        stream = self._stream_for(seq)
        for segs, views in units[:-1]:
            bufs = wire.frame_buffers(wire.DATA, {"seq": seq, "segs": segs}, views)
            with stream.lock:
                wire.sendmsg_all(stream.sock, bufs)
        if units:
            self._last_frame[seq] = (stream, units[-1])

    def _send_meta(self, header: dict) -> None:
        # the META's fields ride in the last DATA frame's header: one frame,
        # one JSON and one receiver wake-up fewer per transfer
        stream, last = self._last_frame.pop(header["seq"], (None, None))
        if last is None:  # nothing to move (no blocks): a plain META frame
            stream, bufs = self._stream_for(header["seq"]), wire.frame_buffers(wire.META, header)
        else:
            bufs = wire.frame_buffers(wire.DATA, {**header, "segs": last[0]}, last[1])
        with stream.lock:
            wire.sendmsg_all(stream.sock, bufs)


class TcpReceiver(ControlReceiver):
    name = "tcp"

    def __init__(self, pool: torch.Tensor, config: TransferConfig):
        super().__init__(pool, config)
        self._dst = _cpu_bytes(pool, "destination")

    def _on_data(self, sock: socket.socket, state: dict, hdr: dict, payload_len: int) -> None:
        segs = hdr.get("segs")
        if not isinstance(segs, list) or not segs:
            raise wire.FrameError("DATA frame without segments")
        total, limit = 0, len(self._dst)
        for seg in segs:
            if not (isinstance(seg, list) and len(seg) == 2 and all(type(v) is int for v in seg)):
                raise wire.FrameError(f"bad segment {seg!r}")
            off, n = seg
            if off < 0 or n <= 0 or off + n > limit:
                raise wire.FrameError(f"segment [{off}, {off + n}) outside the {limit}-byte pool")
            total += n
        if total != payload_len:
            raise wire.FrameError(f"segments cover {total} bytes, payload is {payload_len}")
        for off, n in segs:
            wire.recv_exact_into(sock, self._dst[off:off + n])
        if "meta" in hdr:  # the transfer's last frame: its bytes have landed
            self._answer_meta(sock, state, hdr)


def _check(config: TransferConfig) -> None:
    pass  # plain sockets are always there


TRANSPORT = Transport("tcp", TcpSender, TcpReceiver, _check)
