"""Authenticated TCP listener: one accept thread, one thread per connection.

Binds 127.0.0.1 unless an address is given. Each connection first passes the
HMAC handshake (auth.py) under a time limit, then runs `handler(sock, peer)`.
A refused peer, a malformed frame or a broken connection ends that connection
only: it is logged, a FrameError is answered with an ERROR frame, and the
accept loop goes on.
"""
from __future__ import annotations

import logging
import socket
import threading
from typing import Callable

from inference.transfer import wire
from inference.transfer.auth import AuthError, server_handshake

log = logging.getLogger("inference.transfer.listener")


class Listener:
    def __init__(self, host: str, port: int, token: bytes, handler: Callable[[socket.socket, str], None],
                 handshake_timeout_s: float = 10.0, name: str = "kv"):
        self._token, self._handler, self._timeout_s, self._name = token, handler, handshake_timeout_s, name
        self._sock = socket.create_server((host, port), backlog=64)
        self._closed = threading.Event()
        self._conns: set[socket.socket] = set()
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._accept_loop, name=f"{name}-listener", daemon=True)
        self._thread.start()

    @property
    def address(self) -> str:
        host, port = self._sock.getsockname()[:2]
        return f"{host}:{port}"

    def _accept_loop(self) -> None:
        while not self._closed.is_set():
            try:
                conn, addr = self._sock.accept()
            except OSError:
                if self._closed.is_set():
                    return
                continue
            peer = f"{addr[0]}:{addr[1]}"
            threading.Thread(target=self._serve, args=(conn, peer), name=f"{self._name}-conn-{peer}", daemon=True).start()

    def _serve(self, conn: socket.socket, peer: str) -> None:
        with self._lock:
            self._conns.add(conn)
        try:
            conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            conn.settimeout(self._timeout_s)  # a silent peer cannot hold the handshake
            server_handshake(conn, self._token, peer)
            conn.settimeout(None)
            self._handler(conn, peer)
        except AuthError:
            pass  # logged by the handshake
        except wire.FrameError as e:
            log.warning("rejected frame from %s: %s", peer, e)
            try:
                wire.send_frame(conn, wire.ERROR, {"error": f"malformed frame: {e}"})
            except OSError:
                pass
        except (wire.PeerClosed, OSError) as e:
            if not self._closed.is_set():
                log.info("%s connection %s ended: %s", self._name, peer, e)
        except Exception:  # a handler bug must not take the listener down
            log.exception("%s connection %s failed", self._name, peer)
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def close(self) -> None:
        self._closed.set()
        try:
            self._sock.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
        self._sock.close()
        with self._lock:
            conns = list(self._conns)
        for c in conns:
            try:
                c.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
        self._thread.join(timeout=2)
