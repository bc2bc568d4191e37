"""Transports by name, imported lazily; availability checked at selection.

select_transport("rdma") on a machine without an RDMA device raises
TransportUnavailable with the reason and the way out; with fallback="tcp" it
logs that reason and returns tcp instead. Importing a transport module never
touches optional dependencies (pyverbs, CUDA): only its check does.
"""
from __future__ import annotations

import importlib
import logging

from inference.transfer.base import TransferConfig, Transport, TransportUnavailable

log = logging.getLogger("inference.transfer")

# name -> module exposing TRANSPORT
TRANSPORTS = {
    "shm": "inference.transfer.shm",
    "tcp": "inference.transfer.tcp",
    "cuda-ipc": "inference.transfer.cuda_ipc",
    "rdma": "inference.transfer.rdma",
    "fake": "inference.transfer.fake",
}


def _load(name: str, config: TransferConfig) -> Transport:
    if name not in TRANSPORTS:
        raise TransportUnavailable(f"unknown transport {name!r}; choose one of {sorted(TRANSPORTS)}")
    transport: Transport = importlib.import_module(TRANSPORTS[name]).TRANSPORT
    transport.check_available(config)
    return transport


def select_transport(name: str | None = None, config: TransferConfig | None = None, fallback: str | None = None) -> Transport:
    """The transport `name` (default config.transport), or `fallback`
    (default config.fallback) when `name` cannot run here."""
    config = config or TransferConfig()
    name = name or config.transport
    fallback = fallback if fallback is not None else config.fallback
    try:
        return _load(name, config)
    except TransportUnavailable as e:
        if not fallback or fallback == name:
            raise
        log.warning("%s; falling back to %s", e, fallback)
        return _load(fallback, config)


def available_transports(config: TransferConfig | None = None) -> dict[str, str | None]:
    """name -> None when usable here, else the reason it is not."""
    out: dict[str, str | None] = {}
    for name in TRANSPORTS:
        try:
            _load(name, config or TransferConfig())
            out[name] = None
        except TransportUnavailable as e:
            out[name] = str(e)
    return out
