"""`cuda-ipc`: GPUs of one host; the sender writes into the receiver's GPU pool.

The receiver exports its pool once through torch.multiprocessing's CUDA IPC
reduction (cudaIpcGetMemHandle under the hood) as plain JSON fields in its
HELLO reply (no pickle crosses the socket). The sender opens the handle with
rebuild_cuda_tensor. Its HELLO carries EVENTS interprocess CUDA events
(cudaIpcGetEventHandle), made once; the receiver opens them once.
Per transfer, nothing on the sender waits for the GPU:
  sender:   side stream waits for the current stream (the KV is written) ->
            the copies: one cudaMemcpyAsync per coalesced run, called through
            ctypes where cuda_memcpy finds the runtime (the GIL held; every
            run of the chunk checked inside both pools before any is issued;
            naming the side stream, so with no torch stream context when this
            thread's device is the pool's), else copy_, or one gather + one
            scatter kernel when a transfer's runs are many (their block
            indices expanded on the device from the run table) -> record the
            next event (round robin over EVENTS) on the side stream ->
            META {event: slot} -> return.
  receiver: on META, synchronize that event (the copies are done in its
            memory), then queue the meta and ACK (a METAS frame: one wait,
            then each item checked and queued, one ACKS frame).
Queued sends go in chunks of a group (send_many, sender_groups.py): one stream
wait, every request's copies, one event whose slot the chunk's METAS frame(s)
name; the receiver waits on it once a frame and answers with one ACKS frame.
The source blocks are freed on that ACK, so they are never reused while a
copy still reads them; a release without ACK (failure, lease) first
synchronizes the side stream. Reusing an event slot is safe: every record is
on the one side stream, so a later record completing implies the earlier
copies completed too.

Debug switch: DOCPIPE_CUDA_IPC_SYNC=1 (read when a sender connects / a
receiver is built) makes both sides fully synchronise around every copy: the
sender drains the whole device (torch.cuda.synchronize) before the copy and
waits for its side stream and event after it; the receiver drains its device
before and after waiting on the event. Slow, for bisecting only: if PD output
becomes correct with it, the fault is an ordering bug in this transport.
"""
from __future__ import annotations

import base64
import logging
import threading

import torch

from inference.streams import side_stream

from inference.env import env_flag
from inference.transfer import cuda_memcpy
from inference.transfer.base import TransferConfig, TransferError, Transport, TransportUnavailable
from inference.transfer.receiver import ControlReceiver
from inference.transfer.sender import ControlSender
from inference.transfer.source import PreparedTransfer, copy_addresses, flat_bytes
from inference.h2d import to_device

log = logging.getLogger("inference.transfer.cuda_ipc")

SYNC_ENV = "DOCPIPE_CUDA_IPC_SYNC"
EVENTS = 16  # interprocess events per connection, used round robin
MAX_COPY_CALLS = 16  # more runs than this go through one gather + one scatter kernel

_B64_FIELDS = ("handle", "ref_counter_handle", "event_handle")


def sync_requested() -> bool:
    """True when SYNC_ENV asks for fully synchronised copies (debugging)."""
    on = env_flag(SYNC_ENV)
    if on:
        log.warning("cuda-ipc: %s is set: every copy is fully synchronised on both sides (debugging, slow)", SYNC_ENV)
    return on


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


def enqueue_copies(src: torch.Tensor, dst: torch.Tensor, prep: PreparedTransfer,
                   runtime: cuda_memcpy.RuntimeCopy | None = None, stream: torch.cuda.Stream | None = None) -> None:
    """Copy prep's runs from src to dst (flat uint8 tensors) on the current
    stream (`stream`, which must be it, where given), without waiting. Few
    runs: one copy per run, through `runtime` (cudaMemcpyAsync by ctypes, on
    `stream`) where given, else copy_. Many runs on one device: one
    index_select into a temporary and one index_copy_, whatever the number of
    blocks; no Python loop per block."""
    if len(prep.runs) <= MAX_COPY_CALLS or src.device != dst.device:
        if runtime is not None and stream is not None:
            handle = stream.cuda_stream
            for d_addr, s_addr, n in copy_addresses(src, dst, prep.copies, "cuda-ipc"):
                runtime(d_addr, s_addr, n, handle)
            return
        for s_off, d_off, n in prep.copies:
            dst[d_off:d_off + n].copy_(src[s_off:s_off + n], non_blocking=True)
        return
    bb = prep.block_bytes
    word = torch.int64 if bb % 8 == 0 and src.data_ptr() % 8 == 0 and dst.data_ptr() % 8 == 0 else torch.uint8
    rows = bb // torch.empty((), dtype=word).element_size()
    src_rows, dst_rows = src.view(word).view(-1, rows), dst.view(word).view(-1, rows)
    src_idx, dst_idx = block_indices(prep.runs, src.device)
    dst_rows.index_copy_(0, dst_idx, src_rows.index_select(0, src_idx))


def block_indices(runs: list, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    """(source ids, destination ids) of every block of `runs`, as int64 tensors
    built on `device` from the run table alone: the host uploads 3 numbers
    per run (pinned staging: a pageable upload would synchronise the side
    stream, which waits on the engine's stream, so the sender thread would
    block until the engine's queued steps ran), the device expands them
    (repeat_interleave with output_size given does not synchronise)."""
    table = to_device([v for r in runs for v in (r.src_block, r.dst_block, r.num_blocks)], device, torch.long).view(-1, 3)
    counts = table[:, 2]
    total = sum(r.num_blocks for r in runs)
    # id of the k-th block of the sequence = its run's first id - the run's start in the sequence + k
    shift = table[:, :2] - (torch.cumsum(counts, 0) - counts).unsqueeze(1)
    idx = torch.repeat_interleave(shift, counts, dim=0, output_size=total)
    idx += torch.arange(total, device=device, dtype=torch.long).unsqueeze(1)
    return idx[:, 0].contiguous(), idx[:, 1].contiguous()


class CudaIpcSender(ControlSender):
    name = "cuda-ipc"

    def _hello(self) -> dict:
        if self.pool.device.type != "cuda":
            raise TransferError("cuda-ipc: the source pool must be on a CUDA device")
        with torch.cuda.device(self.pool.device):
            self._events = [torch.cuda.Event(interprocess=True) for _ in range(EVENTS)]
            handles = [base64.b64encode(bytes(e.ipc_handle())).decode() for e in self._events]
        return {"events": handles}

    def _attach(self, reply: dict) -> None:
        self._dst = import_handle(reply.get("ipc") or {})
        if self._dst.numel() != self.peer_spec.pool_bytes:
            raise TransferError("cuda-ipc: mapped pool size does not match the receiver's spec")
        self._stream = side_stream(self.pool.device, "kv-ipc")  # one per device, not per connection (streams.py)
        # made once: Stream.wait_stream would create (cudaEventCreate) a fresh event per transfer
        self._written = torch.cuda.Event()
        self._written_lock = threading.Lock()  # sends from two threads must not swap their records
        self._records = 0  # event records so far: slot = records % EVENTS
        self._sync = sync_requested()
        self._runtime = cuda_memcpy.runtime()  # None: copy_ (no runtime found, or DOCPIPE_CUDA_IPC_COPY=torch)
        log.info("cuda-ipc: copies through %s", self._runtime.path if self._runtime else "torch copy_")

    batches_sends = True

    @property
    def peer_pool(self) -> torch.Tensor:
        """The receiver's pool as this process maps it (flat bytes), once connected."""
        return self._dst

    def _move(self, seq: int, prep: PreparedTransfer) -> dict:
        return self._move_many([(seq, prep)])

    def _move_many(self, items: list[tuple[int, PreparedTransfer]]) -> dict:
        """One wait for the engine's stream, each item's copies as a lone send makes them, one
        event record: its slot goes in the chunk's METAS frame (a lone send's META). Not one plan
        merged across the group:
        with it, a group's send stalled 83-141 ms on the H200 (session 9, call 3), likely its
        gather temporary, as large as the group, allocated on the prefill worker's nearly full
        device, where the allocator frees cached blocks and so synchronises the device."""
        device = self.pool.device
        if self._sync:
            torch.cuda.synchronize(device)  # every stream of this process: KV writes, conversion staging
        # the pool (and any conversion staging) was written on the current stream; a wait
        # takes the event's state when it is enqueued, so one event serves every transfer
        with self._written_lock:
            self._written.record(torch.cuda.current_stream(device))
            self._stream.wait_event(self._written)
            # round robin over the records, not over seqs: chunks of EVENTS transfers would all
            # name one slot, and a wait on it would cover the next chunk's copies too
            self._records += 1
            slot = self._records % EVENTS
        try:
            if (self._runtime is not None and torch.cuda.current_device() == device.index
                    and all(len(prep.runs) <= MAX_COPY_CALLS for _, prep in items)):
                self._enqueue_runtime(items)  # the copies name the side stream (of this thread's device): no stream context
            else:
                with torch.cuda.stream(self._stream):  # ctypes copies name it; copy_ and the kernels need it current
                    for _, prep in items:
                        enqueue_copies(prep.src_bytes, self._dst, prep, self._runtime, self._stream)
        except cuda_memcpy.RuntimeCopyError as e:  # the ctypes path off for good; the items copied again
            self._runtime_failed(e, items)
        self._events[slot].record(self._stream)
        for _, prep in items:
            if prep.src_bytes is not self._pool_bytes:
                prep.src_bytes.record_stream(self._stream)  # staging must outlive the async copy
        if self._sync:
            self._stream.synchronize()
            self._events[slot].synchronize()
        return {"event": slot}  # the receiver waits on it; this thread does not

    def _enqueue_runtime(self, items: list[tuple[int, PreparedTransfer]]) -> None:
        """Every item's runs by cudaMemcpyAsync on the side stream, each checked inside both pools
        before any is issued (raw pointers)."""
        calls = [call for _, prep in items for call in copy_addresses(prep.src_bytes, self._dst, prep.copies, "cuda-ipc")]
        copy, stream = self._runtime, self._stream.cuda_stream
        for d, s, n in calls:
            copy(d, s, n, stream)

    def _runtime_failed(self, error: Exception, items: list[tuple[int, PreparedTransfer]]) -> None:
        """A cudaMemcpyAsync failed: this process's senders use copy_ from now on, and every item is
        copied again with it (copying a run twice lands the same bytes)."""
        log.warning("cuda-ipc: %s; copying with torch copy_ from now on", error)
        self._runtime = None
        cuda_memcpy.disable(str(error))  # and so do this process's later connections
        with torch.cuda.stream(self._stream):
            for _, prep in items:
                enqueue_copies(prep.src_bytes, self._dst, prep)

    def _quiesce(self) -> None:
        stream = getattr(self, "_stream", None)
        if stream is not None:
            stream.synchronize()


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
        self._sync = sync_requested()

    def _on_hello(self, state: dict, hello: dict) -> dict:
        handles = hello.get("events")
        if not isinstance(handles, list) or not 0 < len(handles) <= 1024 or not all(isinstance(h, str) for h in handles):
            raise TransferError("cuda-ipc: HELLO lacks the sender's event handles")
        try:
            state["events"] = [torch.cuda.Event.from_ipc_handle(self.pool.device, base64.b64decode(h)) for h in handles]
        except (ValueError, RuntimeError) as e:
            raise TransferError(f"cuda-ipc: cannot open the sender's events: {e}") from None
        return {"ipc": self._ipc}

    def _land_with(self, state: dict, meta, hdr: dict) -> None:
        self._wait_event(state, hdr.get("event"), meta.request_id)

    def _land_frame(self, state: dict, hdr: dict) -> bool:
        """A METAS frame names one event for all its items: waited on once."""
        self._wait_event(state, hdr.get("event"), "METAS frame")
        return True

    def _wait_event(self, state: dict, slot: object, what: str) -> None:
        events = state["events"]
        if type(slot) is not int or not 0 <= slot < len(events):
            raise TransferError(f"{what}: META names no valid event slot ({slot!r})")
        if self._sync:
            torch.cuda.synchronize(self.pool.device)  # nothing of this process still touches the pool
        events[slot].synchronize()  # the sender's copies into this pool are complete
        if self._sync:
            torch.cuda.synchronize(self.pool.device)


def _check(config: TransferConfig) -> None:
    if not torch.cuda.is_available():
        raise TransportUnavailable("cuda-ipc: no CUDA device (torch.cuda.is_available() is False); choose shm or tcp")


TRANSPORT = Transport("cuda-ipc", CudaIpcSender, CudaIpcReceiver, _check)
