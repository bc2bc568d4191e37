"""Op backends, chosen per worker from its device. A new accelerator is a new
folder with an `Ops` subclass and one line in BACKENDS."""
from __future__ import annotations

import importlib

import torch

from inference.ops.base import Ops

# device type -> module holding `Ops` for it; "reference" works everywhere.
BACKENDS = {
    "reference": "inference.ops.reference",
    "cuda": "inference.ops.cuda",
}


def get_ops(device: torch.device | str, backend: str | None = None) -> Ops:
    """The op backend for `device`: `backend` by name, else the device's own
    when it has one, else the pure-torch reference."""
    device = torch.device(device)
    name = backend or (device.type if device.type in BACKENDS else "reference")
    if name not in BACKENDS:
        raise ValueError(f"unknown op backend {name!r}; known: {sorted(BACKENDS)}")
    return importlib.import_module(BACKENDS[name]).Ops()


__all__ = ["Ops", "get_ops", "BACKENDS"]
