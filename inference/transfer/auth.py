"""Mutual HMAC challenge-response on every transfer connection.

Before any frame: the listener sends b"DPAU1" + 32-byte nonce; the client
answers its own nonce + HMAC-SHA256(token, "client" | nonce_s | nonce_c); the
listener checks it with hmac.compare_digest and answers b"OK" + its own proof
HMAC(token, "server" | nonce_c | nonce_s), or b"NO" and closes. The token
never crosses the wire. A refused peer is logged with its address.
"""
from __future__ import annotations

import hashlib
import hmac
import logging
import os
import socket

from inference.transfer.wire import recv_exact

log = logging.getLogger("inference.transfer.auth")

_HELLO = b"DPAU1"
_NONCE_BYTES = 32


class AuthError(ConnectionError):
    """The peer does not hold the shared transfer token."""


def _mac(token: bytes, role: bytes, a: bytes, b: bytes) -> bytes:
    return hmac.new(token, role + a + b, hashlib.sha256).digest()


def server_handshake(sock: socket.socket, token: bytes, peer: str) -> None:
    nonce_s = os.urandom(_NONCE_BYTES)
    sock.sendall(_HELLO + nonce_s)
    reply = recv_exact(sock, _NONCE_BYTES + 32)
    nonce_c, proof = reply[:_NONCE_BYTES], reply[_NONCE_BYTES:]
    if not hmac.compare_digest(proof, _mac(token, b"client", nonce_s, nonce_c)):
        log.warning("refused transfer peer %s: token mismatch", peer)
        try:
            sock.sendall(b"NO")
        except OSError:
            pass
        raise AuthError(f"peer {peer} failed authentication")
    sock.sendall(b"OK" + _mac(token, b"server", nonce_c, nonce_s))


def client_handshake(sock: socket.socket, token: bytes) -> None:
    hello = recv_exact(sock, len(_HELLO) + _NONCE_BYTES)
    if hello[:len(_HELLO)] != _HELLO:
        raise AuthError("peer is not a docpipe transfer listener")
    nonce_s, nonce_c = hello[len(_HELLO):], os.urandom(_NONCE_BYTES)
    sock.sendall(nonce_c + _mac(token, b"client", nonce_s, nonce_c))
    verdict = recv_exact(sock, 2)
    if verdict != b"OK":
        raise AuthError("transfer listener refused this sender: token mismatch (check DOCPIPE_TOKEN)")
    if not hmac.compare_digest(recv_exact(sock, 32), _mac(token, b"server", nonce_c, nonce_s)):
        raise AuthError("transfer listener failed to prove the token")
