"""`cuda-ipc`: GPUs of one host; the sender writes into the receiver's GPU pool.

The receiver exports its pool once through torch.multiprocessing's CUDA IPC
reduction (cudaIpcGetMemHandle under the hood) as plain JSON fields in its
HELLO reply (no pickle crosses the socket). The sender opens the handle with
rebuild_cuda_tensor, then per transfer: its side stream waits for the
current stream (the KV is written), the segments are copied device to device
on that stream, an event is synchronized, and only then META goes out, so an
ACKed transfer is complete in the destination memory.
"""
from __future__ import annotations

import base64

import torch

from inference.transfer.base import TransferConfig, TransferError, Transport, TransportUnavailable
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.source import PreparedTransfer, flat_bytes

_B64_FIELDS = ("handle", "ref_counter_handle", "event_handle")


def export_handle(pool: torch.Tensor) -> dict:
    """JSON-able IPC description of the pool's bytes."""
    from torch.multiprocessing.reductions import reduce_tensor

    _, args = reduce_tensor(flat_bytes(pool))
    (_, size, stride, offset, _, _, device, handle, storage_bytes, storage_offset, _,
     ref_handle, ref_offset, event_handle, event_sync) = args
    out = {"size": list(size), "stride": list(stride), "offset": offset, "device": device,
           "handle": handle, "storage_bytes": storage_bytes, "storage_offset": storage_offset,
           "ref_counter_handle": ref_handle, "ref_counter_offset": ref_offset,
           "event_handle": event_handle, "event_sync_required": bool(event_sync)}
    for k in _B64_FIELDS:
        out[k] = None if out[k] is None else base64.b64encode(out[k]).decode()
    return out


def import_handle(d: dict) -> torch.Tensor:
    from torch.multiprocessing.reductions import rebuild_cuda_tensor

    try:
        raw = {k: (None if d[k] is None else base64.b64decode(d[k])) for k in _B64_FIELDS}
        return rebuild_cuda_tensor(torch.Tensor, torch.Size(d["size"]), tuple(d["stride"]), int(d["offset"]),
                                   torch.storage.TypedStorage, torch.uint8, int(d["device"]), raw["handle"],
                                   int(d["storage_bytes"]), int(d["storage_offset"]), False,
                                   raw["ref_counter_handle"], int(d["ref_counter_offset"]), raw["event_handle"],
                                   bool(d["event_sync_required"]))
    except (KeyError, TypeError, ValueError) as e:
        raise TransferError(f"cuda-ipc: bad IPC handle from receiver: {e}") from None


class CudaIpcSender(ControlSender):
    name = "cuda-ipc"

    def _attach(self, reply: dict) -> None:
        if self.pool.device.type != "cuda":
            raise TransferError("cuda-ipc: the source pool must be on a CUDA device")
        self._dst = import_handle(reply.get("ipc") or {})
        if self._dst.numel() != self.peer_spec.pool_bytes:
            raise TransferError("cuda-ipc: mapped pool size does not match the receiver's spec")
        self._stream = torch.cuda.Stream(device=self.pool.device)

    def _move(self, seq: int, prep: PreparedTransfer) -> None:
        src, dst = prep.src_bytes, self._dst
        # the pool (and any conversion staging) was written on the current stream
        self._stream.wait_stream(torch.cuda.current_stream(self.pool.device))
        with torch.cuda.stream(self._stream):
            for unit in prep.units:
                for s in unit.segments:
                    dst[s.dst_offset_bytes:s.dst_offset_bytes + s.num_bytes].copy_(
                        src[s.src_offset_bytes:s.src_offset_bytes + s.num_bytes], non_blocking=True)
            done = torch.cuda.Event()
            done.record(self._stream)
        src.record_stream(self._stream)  # staging must outlive the async copy
        done.synchronize()


class CudaIpcReceiver(ControlReceiver):
    name = "cuda-ipc"

    @classmethod
    def allocate_pool(cls, spec, device: str = "cuda") -> torch.Tensor:
        return torch.zeros(spec.shape, dtype=spec.torch_dtype, device=device)

    def __init__(self, pool: torch.Tensor, config: TransferConfig):
        super().__init__(pool, config)
        if pool.device.type != "cuda":
            raise TransferError("cuda-ipc: the destination pool must be on a CUDA device")
        self._ipc = export_handle(pool)  # exported once, for every sender

    def _on_hello(self, state: dict, hello: dict) -> dict:
        return {"ipc": self._ipc}


def _check(config: TransferConfig) -> None:
    if not torch.cuda.is_available():
        raise TransportUnavailable("cuda-ipc: no CUDA device (torch.cuda.is_available() is False); choose shm or tcp")


TRANSPORT = Transport("cuda-ipc", CudaIpcSender, CudaIpcReceiver, _check)
