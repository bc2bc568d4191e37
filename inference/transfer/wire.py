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

HELLO, DATA, META, ACK, ERROR, BYE, METAS, ACKS = range(1, 9)
KIND_NAMES = {HELLO: "HELLO", DATA: "DATA", META: "META", ACK: "ACK", ERROR: "ERROR", BYE: "BYE",
              METAS: "METAS", ACKS: "ACKS"}
# METAS {items: [META headers], + fields common to them all} and its answer ACKS {items: [ACK headers]}:
# a chunk of a sender's group in one frame each way (transports that move groups: one receiver
# wake-up, one parse and one reply per chunk, not per transfer; sender_groups.py)
MAX_GROUP_ITEMS = 1024


class FrameError(ValueError):
    """A malformed or unexpected frame."""


class PeerClosed(ConnectionError):
    """The peer closed the connection."""


def recv_exact_into(sock: socket.socket, view: memoryview) -> None:
    got, n = 0, len(view)
    while got < n:
        # MSG_WAITALL: the kernel fills the whole view before waking this
        # thread (one wake-up per payload, not one per arriving chunk)
        k = sock.recv_into(view[got:], n - got, socket.MSG_WAITALL)
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


def _json_encoder():
    """obj -> compact JSON bytes. JSONEncoder.encode builds a new C encoder on
    every call (half its time for a META); this one is built once. Falls back
    to the plain encoder where the C accelerator is absent."""
    plain = json.JSONEncoder(separators=(",", ":")).encode
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:
        return lambda obj: plain(obj).encode()

    def refuse(o):
        raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")
    try:  # markers=None: no cycle check (our headers are trees); allow_nan as json.dumps
        c_encode = make(None, refuse, json.encoder.encode_basestring_ascii, None, ":", ",", False, False, True)
        sample = {"a": [1, 2.5, True, None, "x\u00e9"], "b": {}}
        if "".join(c_encode(sample, 0)) != plain(sample):
            raise TypeError("unexpected C encoder output")
    except TypeError:  # another signature in a later Python
        return lambda obj: plain(obj).encode()
    return lambda obj: "".join(c_encode(obj, 0)).encode()


_plain_encode = _json_encoder()


def encode_json(obj: object) -> bytes:
    """obj -> compact JSON bytes with the values json writes, through orjson: ~5x faster (a
    transfer META 4.5 -> 0.9 us here; with a sampling state, whose seed None makes a null,
    10.3 -> 5.4 us). orjson writes a non-finite float as null where json writes NaN or Infinity,
    so when its output holds a null the object is searched for one (all_finite); that, and what
    orjson refuses (keys that are not strings, ints past 64 bits, lone surrogates, dataclasses,
    dates, subclasses of str/int/dict/list), goes to json's C encoder."""
    if _fast_dumps is not None:
        try:
            out = _fast_dumps(obj, option=_DUMPS_OPTIONS)
        except TypeError:
            return _plain_encode(obj)
        if b"null" not in out or all_finite(obj):
            return out
    return _plain_encode(obj)


def frame_buffers(kind: int, header: dict, payloads: list | tuple = ()) -> list:
    """The buffers of one frame, for sendmsg_all (several frames may go in one call)."""
    return encoded_frame_buffers(kind, encode_json(header), payloads)


def check_header_bytes(kind: int, body: bytes) -> None:
    """FrameError when an encoded header is past the peer's MAX_JSON_BYTES (it would refuse the frame)."""
    if len(body) > MAX_JSON_BYTES:
        raise FrameError(f"{KIND_NAMES.get(kind, kind)} frame header of {len(body)} bytes exceeds the peer's limit of {MAX_JSON_BYTES}")


def encoded_frame_buffers(kind: int, body: bytes, payloads: list | tuple = ()) -> list:
    """frame_buffers() for a header already encoded with encode_json. A header past
    MAX_JSON_BYTES raises FrameError here, before any byte is written: the peer would refuse the
    frame and drop the connection, failing everything else in flight on it."""
    check_header_bytes(kind, body)
    payload_len = sum(memoryview(p).nbytes for p in payloads)
    return [HEADER.pack(MAGIC, VERSION, kind, 0, len(body), payload_len) + body, *payloads]


def send_frame(sock: socket.socket, kind: int, header: dict, payloads: list | tuple = ()) -> None:
    sendmsg_all(sock, frame_buffers(kind, header, payloads))


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
    return kind, _decode_header(recv_exact(sock, json_len) if json_len else b""), payload_len


try:  # a dependency; the plain parser and encoder stay the fallback (another stack, or what orjson refuses)
    from orjson import OPT_PASSTHROUGH_DATACLASS, OPT_PASSTHROUGH_DATETIME, OPT_PASSTHROUGH_SUBCLASS
    from orjson import dumps as _fast_dumps, loads as _fast_loads
    _DUMPS_OPTIONS = OPT_PASSTHROUGH_DATACLASS | OPT_PASSTHROUGH_DATETIME | OPT_PASSTHROUGH_SUBCLASS  # json refuses those
except ImportError:  # pragma: no cover (installed with docpipe)
    _fast_dumps = _fast_loads = None


_SCALARS = frozenset((str, int, bool, type(None)))


def all_finite(obj: object) -> bool:
    """No float in obj (nested dicts, lists, tuples) is NaN or infinite. Run on every META whose
    header holds a null (a sampling state's seed None: all of them in a PD run), so containers
    are scanned in place and only nested ones are stacked: a META 6.6 -> 3.2 us on the dev host."""
    stack = [obj]
    while stack:
        v = stack.pop()
        t = type(v)
        if t is dict:
            v = v.values()
        elif t is not list and t is not tuple:  # obj itself, or a subclass of a container or float
            if isinstance(v, float):
                if v - v != 0.0:  # NaN and +-inf give NaN
                    return False
            elif isinstance(v, dict):
                stack.extend(v.values())
            elif isinstance(v, (list, tuple)):
                stack.extend(v)
            continue
        for x in v:
            tx = type(x)
            if tx is float:
                if x - x != 0.0:
                    return False
            elif tx not in _SCALARS:
                stack.append(x)
    return True


_DIGITS = bytes(48 if 48 <= b <= 57 else 32 for b in range(256))  # digits -> b"0", the rest -> b" "
_LONG_RUN = b"0" * 19  # an int past 64 bits has 19 digits or more (-9223372036854775809)


def loads_json(raw: bytes | bytearray) -> object:
    """JSON text -> Python, as json.loads gives it. orjson parses a transfer META ~4x faster
    (5.2 -> 1.3 us here). What it refuses and json accepts (NaN, Infinity) goes to json, and so
    does any text with a run of 19 digits, since orjson reads an int past 64 bits as a float:
    the results and errors are json's."""
    if _fast_loads is not None and _LONG_RUN not in raw.translate(_DIGITS):  # two C passes
        try:
            return _fast_loads(raw)
        except ValueError:
            pass
    return json.loads(raw)


def _decode_header(raw: bytes | bytearray) -> dict:
    """A frame's JSON object (empty raw: {}); anything else is a FrameError."""
    if not raw:
        return {}
    try:
        header = loads_json(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise FrameError(f"frame metadata is not JSON: {e}") from None
    if not isinstance(header, dict):
        raise FrameError("frame metadata must be a JSON object")
    return header


class SmallFrameReader:
    """Reads payload-less frames (ACK, ERROR) through one buffer: one recv
    can bring several, and none costs three syscalls as recv_frame does."""

    def __init__(self, sock: socket.socket):
        self._sock, self._buf = sock, bytearray()

    def read(self) -> list[tuple[int, dict]]:
        """Frames complete after one recv (which may block); [] if none yet."""
        data = self._sock.recv(1 << 16)
        if not data:
            raise PeerClosed("peer closed")
        buf = self._buf
        buf += data
        out = []
        while len(buf) >= HEADER.size:
            magic, version, kind, _, json_len, payload_len = HEADER.unpack_from(buf)
            if magic != MAGIC or version != VERSION or kind not in KIND_NAMES:
                raise FrameError(f"bad frame header {bytes(buf[:HEADER.size])!r}")
            if payload_len or json_len > MAX_JSON_BYTES:
                raise FrameError(f"unexpected {KIND_NAMES[kind]} frame with {payload_len} payload bytes")
            end = HEADER.size + json_len
            if len(buf) < end:
                break
            header = _decode_header(buf[HEADER.size:end])
            del buf[:end]
            out.append((kind, header))
        return out


def expect(kind: int, want: int) -> None:
    if kind != want:
        raise FrameError(f"expected {KIND_NAMES[want]} frame, got {KIND_NAMES.get(kind, kind)}")
