"""Thin pyverbs layer: one registered region per worker, one RC QP per peer.

Imported only by the rdma transport after device.check_available passed, so a
missing pyverbs never breaks `import inference.transfer`.
Region: Context -> PD -> MR over the whole KV pool (registered once).
Link:   CQ -> RC QP; info() gives qp_num, psn, gid, lid, mtu (+ rkey, addr of
        the region) for the out-of-band exchange; connect() walks the QP to RTS.
write():chains of IBV_WR_RDMA_WRITE, one per segment, only the last WR of a
        chain signalled; at most `depth` WRs outstanding; every completion's
        status is checked.
"""
from __future__ import annotations

import random
from collections import deque

try:  # rdma-core renamed the enum module; accept both
    import pyverbs.libibverbs_enums as e
except ImportError:  # older rdma-core
    import pyverbs.enums as e
from pyverbs.addr import GID, AHAttr, GlobalRoute
from pyverbs.cq import CQ
from pyverbs.device import Context, get_device_list
from pyverbs.mr import MR
from pyverbs.pd import PD
from pyverbs.qp import QP, QPAttr, QPCap, QPInitAttr
from pyverbs.wr import SGE, SendWR

from inference.transfer.base import TransferError


def device_names() -> list[str]:
    names = []
    for dev in get_device_list():
        name = dev.name
        names.append(name.decode() if isinstance(name, bytes) else str(name))
    return names


class Region:
    """A device context with one memory region over [addr, addr + num_bytes)."""

    def __init__(self, device: str | None, addr: int, num_bytes: int, remote_write: bool):
        name = device or device_names()[0]
        self.ctx = Context(name=name)
        self.pd = PD(self.ctx)
        access = e.IBV_ACCESS_LOCAL_WRITE | (e.IBV_ACCESS_REMOTE_WRITE if remote_write else 0)
        self.access = access
        self.mr = MR(self.pd, num_bytes, access, address=addr)
        self.addr, self.num_bytes = addr, num_bytes

    def close(self) -> None:
        for obj in (self.mr, self.pd, self.ctx):
            obj.close()


class Link:
    """An RC queue pair from a Region to one peer."""

    def __init__(self, region: Region, port: int, gid_index: int, depth: int = 256):
        self.region, self.port, self.gid_index, self.depth = region, port, gid_index, depth
        self.cq = CQ(region.ctx, depth)
        cap = QPCap(max_send_wr=depth, max_recv_wr=1, max_send_sge=1, max_recv_sge=1)
        self.qp = QP(region.pd, QPInitAttr(qp_type=e.IBV_QPT_RC, scq=self.cq, rcq=self.cq, cap=cap, sq_sig_all=0))
        port_attr = region.ctx.query_port(port)
        self.lid, self.mtu = port_attr.lid, port_attr.active_mtu
        self.gid = str(region.ctx.query_gid(port, gid_index))
        self.psn = random.getrandbits(24)

    def info(self) -> dict:
        return {"qp_num": self.qp.qp_num, "psn": self.psn, "gid": self.gid, "lid": self.lid, "mtu": int(self.mtu),
                "rkey": self.region.mr.rkey, "addr": self.region.addr, "bytes": self.region.num_bytes}

    def connect(self, peer: dict) -> None:
        attr = QPAttr(port_num=self.port)
        attr.pkey_index = 0
        attr.qp_access_flags = self.region.access
        attr.path_mtu = min(int(self.mtu), int(peer["mtu"]))
        attr.dest_qp_num = int(peer["qp_num"])
        attr.rq_psn = int(peer["psn"])
        attr.max_dest_rd_atomic = 1
        attr.min_rnr_timer = 12
        route = GlobalRoute(dgid=GID(peer["gid"]), sgid_index=self.gid_index)
        attr.ah_attr = AHAttr(gr=route, is_global=1, dlid=int(peer["lid"]), port_num=self.port)
        attr.timeout, attr.retry_cnt, attr.rnr_retry = 14, 7, 7
        attr.sq_psn = self.psn
        attr.max_rd_atomic = 1
        self.qp.to_rts(attr)  # RESET -> INIT -> RTR -> RTS

    def write(self, chains: list[list[tuple[int, int, int]]], rkey: int, lkey: int | None = None) -> None:
        """RDMA-WRITE each chain of (local_addr, remote_addr, bytes); returns
        when every chain completed successfully."""
        lkey = self.region.mr.lkey if lkey is None else lkey
        inflight: deque[tuple[int, int]] = deque()  # (chain index, WRs), oldest first
        keep: dict[int, list] = {}  # WR objects stay alive until their chain completes
        outstanding = 0
        for i, chain in enumerate(chains):
            if len(chain) > self.depth:
                raise TransferError(f"rdma: chain of {len(chain)} WRs exceeds the queue depth {self.depth}")
            while outstanding + len(chain) > self.depth:
                outstanding -= self._reap_one(inflight, keep)
            wr, wrs = None, []
            for j, (local, remote, n) in enumerate(reversed(chain)):
                flags = e.IBV_SEND_SIGNALED if j == 0 else 0  # j == 0 is the chain's last WR
                extra = {"next_wr": wr} if wr is not None else {}
                wr = SendWR(wr_id=i, opcode=e.IBV_WR_RDMA_WRITE, num_sge=1, sg=[SGE(local, n, lkey)], send_flags=flags, **extra)
                wr.set_wr_rdma(rkey, remote)
                wrs.append(wr)
            self.qp.post_send(wr)
            inflight.append((i, len(chain)))
            keep[i] = wrs
            outstanding += len(chain)
        while inflight:
            outstanding -= self._reap_one(inflight, keep)

    def _reap_one(self, inflight: deque, keep: dict) -> int:
        """Wait for the oldest chain's completion (an RC send queue completes
        in post order); returns how many WRs it retires."""
        while True:
            n, wcs = self.cq.poll(num_entries=1)
            if n:
                break
        wc = wcs[0]
        if wc.status != e.IBV_WC_SUCCESS:
            raise TransferError(f"rdma: RDMA write chain {wc.wr_id} failed with completion status {wc.status} (vendor error {wc.vendor_err})")
        index, count = inflight.popleft()
        if wc.wr_id != index:
            raise TransferError(f"rdma: completion for chain {wc.wr_id} while waiting for chain {index}")
        keep.pop(index, None)
        return count

    def close(self) -> None:
        for obj in (self.qp, self.cq):
            obj.close()
