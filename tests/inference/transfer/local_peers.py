"""An in-process grouped transport for the transfer tests: a ControlSender whose move copies into
the receiver's pool with cuda-ipc's copy plan on CPU tensors (both ends live in this process), over a
real control connection. The receiver records the item count of every METAS frame it answers, the
sender the seqs of every group it moved."""
from __future__ import annotations

import torch

from inference.transfer.cuda_ipc import enqueue_copies
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.source import flat_bytes

POOLS: dict[int, torch.Tensor] = {}  # receiver id -> its pool (both ends live in this process)


class LocalReceiver(ControlReceiver):
    name = "local-group"
    frames: list = []  # item count of every METAS frame any LocalReceiver answered

    def _answer_metas(self, sock, state, hdr):
        self.frames.append(len(hdr.get("items") or ()))
        super()._answer_metas(sock, state, hdr)

    def _on_hello(self, state, hello):
        POOLS[id(self)] = self.pool
        return {"pool": id(self)}


class LocalSender(ControlSender):
    name = "local-group"
    batches_sends = True

    def _attach(self, reply):
        self._dst, self.groups = flat_bytes(POOLS[reply["pool"]]), []

    def _move(self, seq, prep):
        return self._move_many([(seq, prep)])

    def _move_many(self, items):
        self.groups.append([seq for seq, _ in items])
        for _, prep in items:
            enqueue_copies(self._pool_bytes, self._dst, prep)
        return {"group": len(items)}
