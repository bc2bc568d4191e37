"""Authenticated, length-prefixed message channel over TCP.

A frame is: header `magic b"DPCM" | version u8 | 3 pad | json_len u32 |
num_blobs u32 | blob_bytes u64`, then the JSON body, then num_blobs u64 blob
lengths, then the blobs. Every connection first passes the mutual HMAC
handshake of inference/transfer/auth.py with the shared token (the token never
crosses the wire).

Errors: a frame whose header is off (magic, version, sizes) is a FramingError:
the peer gets an Error reply and the connection is closed, since the byte
stream can no longer be trusted. A well-framed message that does not decode
(bad JSON, unknown type, wrong field types) is a ProtocolError: the peer gets
an Error reply and the connection goes on. Neither ends the process.
Servers bind to loopback unless given another address.
"""
from __future__ import annotations

import logging
import socket
import struct
import threading
from typing import Callable

from inference.disagg.protocol import Error, ProtocolError, decode_message, encode_message
from inference.transfer.auth import client_handshake
from inference.transfer.listener import Listener
from inference.transfer.wire import PeerClosed, recv_exact

log = logging.getLogger("inference.disagg.channel")

MAGIC = b"DPCM"
VERSION = 2  # 2: block-id fields may travel as [first, count] runs
HEADER = struct.Struct("!4sB3xIIQ")
MAX_JSON_BYTES = 64 << 20  # prompt id lists of long documents stay far below
MAX_BLOBS = 64  # images per message
MAX_BLOB_BYTES = 512 << 20  # raw pixels of a message


class FramingError(ProtocolError):
    """The byte stream is not a valid frame: the connection must close."""


class Channel:
    """One authenticated connection; send() is thread-safe, recv() is for one reader."""

    def __init__(self, sock: socket.socket, peer: str):
        self.sock, self.peer = sock, peer
        self._send_lock = threading.Lock()
        self.closed = False

    def send(self, msg) -> None:
        body, blobs = encode_message(msg)
        head = HEADER.pack(MAGIC, VERSION, len(body), len(blobs), sum(len(b) for b in blobs))
        lens = struct.pack(f"!{len(blobs)}Q", *(len(b) for b in blobs))
        with self._send_lock:
            self.sock.sendall(head + body + lens)
            for b in blobs:
                self.sock.sendall(b)

    def recv(self):
        """The next message; ProtocolError (stream intact), FramingError or PeerClosed."""
        magic, version, json_len, num_blobs, blob_bytes = HEADER.unpack(recv_exact(self.sock, HEADER.size))
        if magic != MAGIC or version != VERSION:
            raise FramingError(f"bad frame header (magic {magic!r}, version {version})")
        if json_len > MAX_JSON_BYTES or num_blobs > MAX_BLOBS or blob_bytes > MAX_BLOB_BYTES:
            raise FramingError(f"frame too large ({json_len} JSON bytes, {num_blobs} blobs, {blob_bytes} blob bytes)")
        body = recv_exact(self.sock, json_len)
        lens = struct.unpack(f"!{num_blobs}Q", recv_exact(self.sock, 8 * num_blobs))
        if sum(lens) != blob_bytes:
            raise FramingError("blob lengths do not add up to the header's total")
        blobs = [recv_exact(self.sock, n) for n in lens]
        return decode_message(body, blobs)

    def reply_error(self, error: str, request_id: str = "") -> None:
        try:
            self.send(Error(error=error, request_id=request_id))
        except OSError:
            pass

    def close(self) -> None:
        self.closed = True
        try:
            self.sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self.sock.close()


def connect(address: str, token: bytes, timeout_s: float = 10.0) -> Channel:
    host, _, port = address.rpartition(":")
    sock = socket.create_connection((host, int(port)), timeout=timeout_s)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    client_handshake(sock, token)
    sock.settimeout(None)
    return Channel(sock, address)


def read_loop(channel: Channel, on_message: Callable[[Channel, object], None]) -> None:
    """Deliver messages until the peer leaves; malformed ones get an Error reply."""
    while True:
        try:
            msg = channel.recv()
        except FramingError as e:
            log.warning("closing %s: %s", channel.peer, e)
            channel.reply_error(f"malformed frame: {e}")
            return
        except ProtocolError as e:
            log.warning("rejected message from %s: %s", channel.peer, e)
            channel.reply_error(f"malformed message: {e}")
            continue
        except (PeerClosed, OSError):
            return
        on_message(channel, msg)


class Server:
    """Runs read_loop on every authenticated connection of a transfer Listener
    (one thread each). on_close(channel) runs when a connection ends (peer
    gone, bad frame) while the server is open."""

    def __init__(self, host: str, port: int, token: bytes, on_message: Callable[[Channel, object], None],
                 on_close: Callable[[Channel], None] | None = None, handshake_timeout_s: float = 10.0):
        self._on_message, self._on_close = on_message, on_close
        self._closed = threading.Event()
        self._listener = Listener(host, port, token, self._serve, handshake_timeout_s, name="pd")

    @property
    def address(self) -> str:
        return self._listener.address

    def _serve(self, sock: socket.socket, peer: str) -> None:
        # a handler bug propagates to the Listener, which logs it and ends this connection only
        channel = Channel(sock, peer)
        try:
            read_loop(channel, self._on_message)
        finally:
            channel.close()
            if self._on_close is not None and not self._closed.is_set():
                self._on_close(channel)

    def close(self) -> None:
        self._closed.set()
        self._listener.close()
