"""Framing of the control / data channel shared by every socket transport.

A frame is a fixed header, a JSON object, then `payload_len` raw bytes:
  magic b"DPKV" | version u8 | kind u8 | reserved u16 | json_len u32 | payload_len u64
The payload is never copied through Python bytes: senders pass memoryviews of
the pool to sendmsg (scatter-gather) and receivers recv_into the destination
memory. Anything off (magic, version, kind, sizes, JSON) raises FrameError; the
listener answers with an ERROR frame and drops that connection only.
"""
from __future__ import annotations

import json
import socket
import struct

MAGIC = b"DPKV"
VERSION = 1
HEADER = struct.Struct("!4sBBHIQ")
MAX_JSON_BYTES = 1 << 20  # metadata is small; larger is an attack or a bug
IOV_BATCH = 512  # below IOV_MAX (1024 on Linux)

HELLO, DATA, META, ACK, ERROR, BYE = range(1, 7)
KIND_NAMES = {HELLO: "HELLO", DATA: "DATA", META: "META", ACK: "ACK", ERROR: "ERROR", BYE: "BYE"}


class FrameError(ValueError):
    """A malformed or unexpected frame."""


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


def recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    got, n = 0, len(view)
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise PeerClosed(f"peer closed after {got} of {n} bytes")
        got += k


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    recv_exact_into(sock, memoryview(buf))
    return bytes(buf)


def sendmsg_all(sock: socket.socket, buffers: list) -> None:
    """sendmsg until every buffer is out, resuming after partial sends."""
    views = [memoryview(b).cast("B") for b in buffers if len(b)]
    while views:
        sent = sock.sendmsg(views[:IOV_BATCH])
        while sent:
            if sent >= len(views[0]):
                sent -= len(views[0])
                views.pop(0)
            else:
                views[0] = views[0][sent:]
                sent = 0


def send_frame(sock: socket.socket, kind: int, header: dict, payloads: list | tuple = ()) -> None:
    body = json.dumps(header, separators=(",", ":")).encode()
    payload_len = sum(len(memoryview(p).cast("B")) for p in payloads)
    head = HEADER.pack(MAGIC, VERSION, kind, 0, len(body), payload_len)
    sendmsg_all(sock, [head + body, *payloads])


def recv_frame(sock: socket.socket, max_payload_bytes: int) -> tuple[int, dict, int]:
    """Read header and JSON; returns (kind, header, payload_len). The caller
    consumes the payload (recv_exact_into its destination)."""
    raw = bytearray(HEADER.size)
    view = memoryview(raw)
    k = sock.recv_into(view)
    if k == 0:
        raise PeerClosed("peer closed")
    recv_exact_into(sock, view[k:])
    magic, version, kind, _, json_len, payload_len = HEADER.unpack(raw)
    if magic != MAGIC:
        raise FrameError(f"bad magic {bytes(magic)!r}")
    if version != VERSION:
        raise FrameError(f"unsupported frame version {version}")
    if kind not in KIND_NAMES:
        raise FrameError(f"unknown frame kind {kind}")
    if json_len > MAX_JSON_BYTES:
        raise FrameError(f"frame metadata of {json_len} bytes exceeds {MAX_JSON_BYTES}")
    if payload_len > max_payload_bytes:
        raise FrameError(f"payload of {payload_len} bytes exceeds {max_payload_bytes}")
    try:
        header = json.loads(recv_exact(sock, json_len)) if json_len else {}
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"frame metadata is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise FrameError("frame metadata must be a JSON object")
    return kind, header, payload_len


def expect(kind: int, want: int) -> None:
    if kind != want:
        raise FrameError(f"expected {KIND_NAMES[want]} frame, got {KIND_NAMES.get(kind, kind)}")
