"""KV transfer between prefill and decode workers.

    from inference.transfer import TransferConfig, TransferMeta, select_transport
    t = select_transport("shm", config)              # lazy import + availability check
    pool = t.receiver_cls.allocate_pool(spec)        # decode side
    rx = t.receiver_cls(pool, config); addr = rx.start()
    tx = t.sender_cls(src_pool, config, on_release); tx.connect(addr)
    tx.send(TransferMeta(...)); rx.recv()

See base.py for the lifecycle, blockids.py for block ids held as runs
(TransferMeta takes lists, ranges or BlockIds), plan.py for coalescing, convert.py for
dtype / block-size / head conversion, auth.py and wire.py for the channel.
"""
from inference.transfer.base import (PoolSpec, TransferConfig, TransferError, TransferHandle, Transport,
                                     TransportUnavailable)
from inference.transfer.blockids import BlockIds, BlockIdsError
from inference.transfer.meta import TransferMeta
from inference.transfer.registry import TRANSPORTS, available_transports, select_transport

__all__ = ["BlockIds", "BlockIdsError", "PoolSpec", "TransferConfig", "TransferError", "TransferHandle", "Transport", "TransportUnavailable",
           "TransferMeta", "TRANSPORTS", "available_transports", "select_transport"]
