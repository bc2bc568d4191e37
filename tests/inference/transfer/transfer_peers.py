"""Helpers for transfer tests: random pools and a receiver in another process."""
from __future__ import annotations

import multiprocessing as mp

import torch

from inference.transfer import PoolSpec, TransferConfig, select_transport

TOKEN = "test-token-0123"


def random_pool(spec: PoolSpec, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randn(spec.shape, generator=g).to(spec.torch_dtype)


def _receiver_main(name: str, spec: PoolSpec, expect: int, conn) -> None:
    config = TransferConfig(transport=name, token=TOKEN)
    t = select_transport(name, config)
    pool = t.receiver_cls.allocate_pool(spec)
    rx = t.receiver_cls(pool, config)
    conn.send(rx.start())
    metas = [rx.recv(timeout_s=20) for _ in range(expect)]
    conn.send(([m.to_dict() if m else None for m in metas], pool.clone()))
    conn.recv()  # parent done: closing earlier would race the last ACK
    rx.close()


class RemoteReceiver:
    """A receiver in a spawned process; result() returns (metas, its pool)."""

    def __init__(self, name: str, spec: PoolSpec, expect: int):
        ctx = mp.get_context("spawn")
        self._conn, child = ctx.Pipe()
        self._proc = ctx.Process(target=_receiver_main, args=(name, spec, expect, child), daemon=True)
        self._proc.start()
        if not self._conn.poll(60):
            raise TimeoutError("receiver process did not start")
        self.address = self._conn.recv()

    def result(self):
        if not self._conn.poll(60):
            raise TimeoutError("receiver process sent no result")
        out = self._conn.recv()
        self._conn.send("bye")
        self._proc.join(10)
        return out
