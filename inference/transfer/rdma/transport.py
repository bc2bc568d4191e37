"""`rdma` sender/receiver: RC RDMA WRITE into the receiver's registered pool.

Both sides register their whole CPU pool once (Region). On connect the sender
creates its QP and sends its info in HELLO; the receiver makes a QP for that
sender, moves it to RTS and answers with its QP info, rkey and pool address;
the sender moves its QP to RTS. Per transfer: one chain of RDMA WRITEs per
work unit (segments <= max_unit_bytes, last WR signalled), several chains in
flight, all completions checked, then META over the control socket. A
converted transfer writes from a staging tensor registered for that transfer.
pyverbs is imported only when a Sender/Receiver is built.
"""
from __future__ import annotations

import logging

import torch

from inference.transfer.base import TransferConfig, TransferError
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.source import PreparedTransfer

log = logging.getLogger(__name__)
MOVES_DRAIN_S = 5.0  # close() waits this long for a running write before closing the verbs objects


def _cpu_pool(pool: torch.Tensor) -> torch.Tensor:
    if pool.device.type != "cpu":
        raise TransferError("rdma: only CPU pools are registered (GPU memory needs peer-memory or dmabuf MRs)")
    return pool


class RdmaSender(ControlSender):
    name = "rdma"

    def __init__(self, pool: torch.Tensor, config: TransferConfig, on_release=None):
        super().__init__(_cpu_pool(pool), config, on_release)
        from inference.transfer.rdma import verbs

        self._verbs = verbs
        self._region = verbs.Region(config.rdma_device, pool.data_ptr(), self.spec.pool_bytes, remote_write=False)
        self._link = verbs.Link(self._region, config.rdma_port, config.rdma_gid_index)

    def _hello(self) -> dict:
        return {"qp": self._link.info()}

    def _attach(self, reply: dict) -> None:
        peer = reply.get("qp")
        if not isinstance(peer, dict):
            raise TransferError("rdma: receiver sent no QP info")
        self._link.connect(peer)
        self._rkey, self._raddr = int(peer["rkey"]), int(peer["addr"])

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        src = prep.src_bytes
        staged = src.data_ptr() != self.pool.data_ptr()
        region = self._verbs.Region(self.config.rdma_device, src.data_ptr(), src.numel(), False) if staged else self._region
        base = src.data_ptr()
        chains = [[(base + s.src_offset_bytes, self._raddr + s.dst_offset_bytes, s.num_bytes) for s in u.segments]
                  for u in prep.units]
        try:
            self._link.write(chains, self._rkey, region.mr.lkey)
        finally:
            if staged:
                region.close()

    def close(self) -> None:
        super().close()
        if not self._wait_moves_left(MOVES_DRAIN_S):  # a write may still poll the completion queue
            log.warning("rdma: a move still runs %.0f s after close; closing its queue pair anyway", MOVES_DRAIN_S)
        self._link.close()
        self._region.close()


class RdmaReceiver(ControlReceiver):
    name = "rdma"

    def __init__(self, pool: torch.Tensor, config: TransferConfig):
        super().__init__(_cpu_pool(pool), config)
        from inference.transfer.rdma import verbs

        self._verbs = verbs
        self._region = verbs.Region(config.rdma_device, pool.data_ptr(), self.spec.pool_bytes, remote_write=True)

    def _on_hello(self, state: dict, hello: dict) -> dict:
        peer = hello.get("qp")
        if not isinstance(peer, dict):
            raise TransferError("rdma: sender sent no QP info")
        link = self._verbs.Link(self._region, self.config.rdma_port, self.config.rdma_gid_index)
        link.connect(peer)
        state["link"] = link
        return {"qp": link.info()}

    def _on_disconnect(self, state: dict) -> None:
        if "link" in state:
            state["link"].close()

    def close(self) -> None:
        super().close()
        self._region.close()
