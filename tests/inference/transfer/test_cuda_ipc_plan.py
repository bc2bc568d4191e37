"""cuda-ipc without a GPU: the copy plan on CPU tensors (both paths, bit-exact)
and the sender/receiver event protocol against fake CUDA streams and events:
no per-transfer synchronize on the sender, the receiver waits on the named
event before it acks."""
import contextlib
import ctypes
import random
import threading
import types

import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferError, TransferMeta
from inference.transfer import cuda_ipc
from inference.transfer.plan import Run
from inference.transfer.source import flat_bytes, prepare

SPEC = PoolSpec(64, 2, 4, 2, 8, "float32")  # 512-byte blocks


def _pools():
    src = torch.randn(SPEC.shape)
    return src, torch.zeros(SPEC.shape)


@pytest.mark.parametrize("pairs", [
    [(i, 10 + i) for i in range(20)],  # one run: one copy
    [(3, 7), (9, 1), (10, 2), (40, 63)],  # a few runs: one copy each
    list(zip(random.Random(0).sample(range(64), 40), random.Random(1).sample(range(64), 40))),  # many: gather + scatter
])
def test_enqueue_copies_lands_every_block(pairs):
    src, dst = _pools()
    meta = TransferMeta("r", [s for s, _ in pairs], [d for _, d in pairs], len(pairs) * SPEC.block_size, 0, 0)
    prep = prepare(src, SPEC, SPEC, meta, TransferConfig(token="t"))
    cuda_ipc.enqueue_copies(prep.src_bytes, flat_bytes(dst), prep)
    for s, d in pairs:
        assert torch.equal(dst[d], src[s])
    untouched = sorted(set(range(64)) - {d for _, d in pairs})
    assert torch.count_nonzero(dst[untouched]) == 0


class HostRuntime:
    """Stands in for cuda_memcpy.RuntimeCopy on CPU tensors: memmove at the raw addresses it is given."""

    def __init__(self):
        self.calls = []

    def __call__(self, dst, src, n, stream):
        self.calls.append((n, stream))
        ctypes.memmove(dst, src, n)


@pytest.mark.parametrize("pairs", [[(i, 10 + i) for i in range(20)], [(3, 7), (9, 1), (10, 2), (40, 63)]])
def test_runtime_copies_land_every_block_at_raw_addresses(pairs):
    """The ctypes path: one call per run on the given stream, offsets into both pools right."""
    src, dst = _pools()
    meta = TransferMeta("r", [s for s, _ in pairs], [d for _, d in pairs], len(pairs) * SPEC.block_size, 0, 0)
    prep = prepare(src, SPEC, SPEC, meta, TransferConfig(token="t"))
    rt, stream = HostRuntime(), types.SimpleNamespace(cuda_stream=1234)
    cuda_ipc.enqueue_copies(prep.src_bytes, flat_bytes(dst), prep, rt, stream)
    assert [(n, h) for n, h in rt.calls] == [(r.num_blocks * SPEC.block_bytes, 1234) for r in prep.runs]
    for s, d in pairs:
        assert torch.equal(dst[d], src[s])
    assert torch.count_nonzero(dst[sorted(set(range(64)) - {d for _, d in pairs})]) == 0


@pytest.mark.parametrize("runs", [
    [Run(0, 0, 2), Run(5, 40, 2)],  # the second run ends past the (cut) destination
    [Run(0, 0, 2), Run(-1, 3, 1)],  # a negative offset
    [Run(0, 0, 2), Run(4, 4, 0)],  # an empty run
])
def test_runtime_copy_outside_the_pools_is_refused_before_any_copy(runs):
    """Raw pointers: every copy of a plan is checked before the first is issued."""
    src, dst = _pools()
    prep = cuda_ipc.PreparedTransfer(flat_bytes(src), runs, SPEC.block_bytes, 1, 1)
    rt = HostRuntime()
    with pytest.raises(TransferError, match="outside the pools"):
        cuda_ipc.enqueue_copies(prep.src_bytes, flat_bytes(dst)[:41 * SPEC.block_bytes], prep, rt, types.SimpleNamespace(cuda_stream=1))
    assert rt.calls == [] and torch.count_nonzero(dst) == 0


def test_a_failed_runtime_copy_falls_back_to_copy_for_good(fake_cuda, caplog, monkeypatch):
    """cudaMemcpyAsync fails after one copy went through: the sender copies the whole chunk again
    with copy_, and this process's senders keep copy_ after."""
    from inference.transfer import cuda_memcpy

    monkeypatch.setattr(cuda_memcpy, "_DISABLED", [])
    src, dst = _pools()
    tx = _sender(src, dst)
    once = HostRuntime()

    def fails_second(dst_ptr, src_ptr, n, stream):
        if once.calls:
            raise cuda_memcpy.RuntimeCopyError("cudaMemcpyAsync of 512 bytes failed: invalid argument (1)")
        once(dst_ptr, src_ptr, n, stream)
    tx._runtime = fails_second
    items = [(i, prepare(src, SPEC, SPEC, TransferMeta(f"r{i}", [i], [i + 20], 4, 0, 0), TransferConfig(token="t"),
                         tx._pool_bytes)) for i in (1, 2, 3)]
    with caplog.at_level("WARNING", logger="inference.transfer.cuda_ipc"):
        tx._move_many(items)
    assert len(once.calls) == 1 and tx._runtime is None and any("copy_ from now on" in r.getMessage() for r in caplog.records)
    for i in (1, 2, 3):
        assert torch.equal(dst[i + 20], src[i])
    assert cuda_memcpy.runtime() is None  # a later connection starts on copy_


def test_many_runs_take_the_indexed_path(monkeypatch):
    calls = []
    monkeypatch.setattr(torch.Tensor, "index_copy_", lambda self, *a: calls.append(a) or self)
    src, dst = _pools()
    ids = list(range(0, 64, 2))  # 32 single-block runs
    prep = prepare(src, SPEC, SPEC, TransferMeta("r", ids, ids, 32 * 4, 0, 0), TransferConfig(token="t"))
    assert len(prep.runs) == 32 > cuda_ipc.MAX_COPY_CALLS
    cuda_ipc.enqueue_copies(prep.src_bytes, flat_bytes(dst), prep)
    assert len(calls) == 1  # one scatter for all blocks, not one per block


class FakeEvent:
    def __init__(self, interprocess=False):
        self.records, self.syncs = [], 0

    def ipc_handle(self):
        return b"h" * 64

    def record(self, stream):
        self.records.append(stream)

    def synchronize(self):
        self.syncs += 1


class FakeStream:
    cuda_stream = 0  # the handle a ctypes copy is given

    def __init__(self, device=None):
        self.syncs, self.waits = 0, 0

    def wait_stream(self, other):
        self.waits += 1

    def wait_event(self, event):
        self.waits += 1

    def synchronize(self):
        self.syncs += 1


@pytest.fixture
def fake_cuda(monkeypatch):
    monkeypatch.setattr(torch.cuda, "Event", FakeEvent)
    monkeypatch.setattr(torch.cuda, "Stream", FakeStream)
    monkeypatch.setattr(torch.cuda, "current_stream", lambda device=None: FakeStream())
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "device", lambda d: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_device", lambda: None)  # the CPU pools' device index


def _sender(src, dst):
    tx = cuda_ipc.CudaIpcSender.__new__(cuda_ipc.CudaIpcSender)
    tx.pool, tx.spec, tx.peer_spec, tx._pool_bytes = src, SPEC, SPEC, flat_bytes(src)
    tx._events = [FakeEvent() for _ in range(cuda_ipc.EVENTS)]
    tx._stream, tx._dst = FakeStream(), flat_bytes(dst)
    tx._written, tx._written_lock, tx._sync, tx._runtime, tx._records = FakeEvent(), threading.Lock(), False, None, 0
    return tx


def test_sender_records_an_event_and_never_waits(fake_cuda):
    src, dst = _pools()
    tx = _sender(src, dst)
    seqs = [1, 2] + [cuda_ipc.EVENTS + 1] * (cuda_ipc.EVENTS - 1)  # the slot follows the records, not the seq
    for i, seq in enumerate(seqs, start=1):
        meta = TransferMeta(f"r{i}", [seq], [seq + 1], 4, 0, 0)
        extra = tx._move(seq, prepare(src, SPEC, SPEC, meta, TransferConfig(token="t"), tx._pool_bytes))
        assert extra == {"event": i % cuda_ipc.EVENTS}
        assert torch.equal(dst[seq + 1], src[seq])
    n = len(seqs)
    assert tx._stream.syncs == 0 and all(e.syncs == 0 for e in tx._events)
    assert tx._stream.waits == n and len(tx._written.records) == n  # one reused event orders each copy after the KV
    assert [len(e.records) for e in tx._events[:3]] == [1, 2, 1]  # slot 1 reused by the 17th record
    tx._quiesce()  # a release without ACK waits for the copies first
    assert tx._stream.syncs == 1


def test_receiver_waits_on_the_named_event(fake_cuda):
    rx = cuda_ipc.CudaIpcReceiver.__new__(cuda_ipc.CudaIpcReceiver)
    rx._sync = False
    events = [FakeEvent() for _ in range(4)]
    state = {"events": events}
    meta = TransferMeta("r", [0], [0], 4, 0, 0)
    rx._land_with(state, meta, {"event": 2})
    assert [e.syncs for e in events] == [0, 0, 1, 0]
    for bad in (None, 4, -1, "2"):
        with pytest.raises(TransferError, match="event slot"):
            rx._land_with(state, meta, {"event": bad})


def test_receiver_waits_once_per_metas_frame_and_a_bad_slot_refuses_every_item(fake_cuda):
    """A METAS frame's items share its event: one wait for the frame, every item delivered and
    acked in one ACKS frame; a frame naming no valid slot NACKs each item, delivers none."""
    import socket

    from inference.transfer import wire

    rx = cuda_ipc.CudaIpcReceiver.__new__(cuda_ipc.CudaIpcReceiver)
    cuda_ipc.ControlReceiver.__init__(rx, torch.zeros(SPEC.shape), TransferConfig(token="t"))
    rx._sync = False
    events = [FakeEvent() for _ in range(4)]
    a, b = socket.socketpair()
    state = {"events": events, "peer": "p", "send_lock": threading.Lock()}
    items = [{"seq": i, "meta": TransferMeta(f"r{i}", [i], [i], 4, 0, 0).to_wire()} for i in range(3)]
    rx._answer_metas(a, state, {"items": items, "event": 1})
    kind, hdr, _ = wire.recv_frame(b, 0)
    assert kind == wire.ACKS and [x["ok"] for x in hdr["items"]] == [True] * 3
    assert [e.syncs for e in events] == [0, 1, 0, 0]
    assert [rx.recv(0).request_id for _ in range(3)] == ["r0", "r1", "r2"]
    rx._answer_metas(a, state, {"items": items[:2], "event": 9})
    kind, hdr, _ = wire.recv_frame(b, 0)
    assert [x["ok"] for x in hdr["items"]] == [False, False] and "event slot" in hdr["items"][0]["error"]
    assert rx.recv(0) is None and [e.syncs for e in events] == [0, 1, 0, 0]
    a.close()
    b.close()


def _metas_receiver(events):
    rx = cuda_ipc.CudaIpcReceiver.__new__(cuda_ipc.CudaIpcReceiver)
    cuda_ipc.ControlReceiver.__init__(rx, torch.zeros(SPEC.shape), TransferConfig(token="t"))
    rx._sync = False
    return rx, {"events": events, "peer": "p", "send_lock": threading.Lock()}


def test_items_delivered_before_a_fault_are_acked(fake_cuda, monkeypatch):
    """An unexpected error on the second item of a METAS frame ends the connection, but the first,
    already delivered, still gets its ACK."""
    import socket

    from inference.transfer import wire

    rx, state = _metas_receiver([FakeEvent()])
    deliver = rx._deliver
    monkeypatch.setattr(rx, "_deliver", lambda meta: deliver(meta) if meta.request_id == "r0" else 1 / 0)
    a, b = socket.socketpair()
    items = [{"seq": i, "meta": TransferMeta(f"r{i}", [i], [i], 4, 0, 0).to_wire()} for i in range(3)]
    with pytest.raises(ZeroDivisionError):
        rx._answer_metas(a, state, {"items": items, "event": 0})
    kind, hdr, _ = wire.recv_frame(b, 0)
    assert kind == wire.ACKS and hdr["items"] == [{"seq": 0, "ok": True}]
    assert rx.recv(0).request_id == "r0" and rx.recv(0) is None
    a.close()
    b.close()


def test_a_metas_frame_is_stamped_received_before_its_landing_wait(fake_cuda):
    """kv_copy_wait (received -> landed) holds the wait for the sender's copies, not kv_wire."""
    import socket
    import time

    class SlowEvent(FakeEvent):
        def synchronize(self):
            time.sleep(0.05)

    rx, state = _metas_receiver([SlowEvent()])
    a, b = socket.socketpair()
    rx._answer_metas(a, state, {"items": [{"seq": 1, "meta": TransferMeta("r", [0], [0], 4, 0, 0).to_wire()}], "event": 0})
    hops = rx.recv(0).hops
    assert hops["landed"] - hops["received"] >= 0.045
    a.close()
    b.close()


@pytest.mark.parametrize("items", [[{"seq": 1}, {"seq": "2"}], [{"seq": 1}, {"seq": 1}], [{"seq": 1, "self_acked": True}]])
def test_a_malformed_metas_frame_delivers_nothing(fake_cuda, items):
    """Seqs that are not distinct ints, or a self-acked item, end the connection before any item
    is landed or delivered (none would get its ACK)."""
    from inference.transfer import wire

    rx = cuda_ipc.CudaIpcReceiver.__new__(cuda_ipc.CudaIpcReceiver)
    cuda_ipc.ControlReceiver.__init__(rx, torch.zeros(SPEC.shape), TransferConfig(token="t"))
    rx._sync = False
    events = [FakeEvent() for _ in range(2)]
    good = TransferMeta("g", [0], [0], 4, 0, 0).to_wire()
    with pytest.raises(wire.FrameError):
        rx._answer_metas(None, {"events": events, "peer": "p"}, {"items": [{**x, "meta": good} for x in items], "event": 0})
    assert rx.recv(0) is None and events[0].syncs == 0


def test_receiver_refuses_a_hello_without_events(fake_cuda, monkeypatch):
    rx = cuda_ipc.CudaIpcReceiver.__new__(cuda_ipc.CudaIpcReceiver)
    rx._ipc, rx.pool = {"handle": "x"}, torch.zeros(1)
    with pytest.raises(TransferError, match="event handles"):
        rx._on_hello({}, {"spec": {}})
    monkeypatch.setattr(torch.cuda.Event, "from_ipc_handle", classmethod(lambda cls, dev, h: FakeEvent()), raising=False)
    state = {}
    assert rx._on_hello(state, {"events": ["aGg=", "aGg="]}) == {"ipc": {"handle": "x"}}
    assert len(state["events"]) == 2


def test_sync_switch_drains_both_sides(fake_cuda, monkeypatch):
    """DOCPIPE_CUDA_IPC_SYNC=1: the sender drains the device before the copy and
    waits for it after; the receiver drains before and after the event wait."""
    drains = []
    monkeypatch.setattr(torch.cuda, "synchronize", lambda device=None: drains.append(device))
    monkeypatch.setenv(cuda_ipc.SYNC_ENV, "1")
    assert cuda_ipc.sync_requested()
    src, dst = _pools()
    tx = _sender(src, dst)
    tx._sync = cuda_ipc.sync_requested()
    meta = TransferMeta("r", [1], [2], 4, 0, 0)
    tx._move(1, prepare(src, SPEC, SPEC, meta, TransferConfig(token="t"), tx._pool_bytes))
    assert len(drains) == 1 and tx._stream.syncs == 1 and tx._events[1].syncs == 1
    assert torch.equal(dst[2], src[1])
    rx = cuda_ipc.CudaIpcReceiver.__new__(cuda_ipc.CudaIpcReceiver)
    rx.pool, rx._sync = src, True
    events = [FakeEvent() for _ in range(2)]
    rx._land_with({"events": events}, meta, {"event": 1})
    assert len(drains) == 3 and events[1].syncs == 1
    for off in ("", "0", "no"):
        monkeypatch.setenv(cuda_ipc.SYNC_ENV, off)
        assert not cuda_ipc.sync_requested()


def _gpu_sender(spec: PoolSpec, expect: int, **config_kw):
    """(receiver in another process expecting `expect` transfers, random source pool on the GPU,
    a cuda-ipc sender connected to it); skips without a GPU."""
    if not torch.cuda.is_available():
        pytest.skip("cuda-ipc needs a CUDA device; this machine has none")
    from inference.transfer import select_transport
    from transfer_peers import TOKEN, RemoteReceiver, random_pool

    peer = RemoteReceiver("cuda-ipc", spec, expect=expect)
    src = random_pool(spec).cuda()
    tx = select_transport("cuda-ipc").sender_cls(src, TransferConfig(transport="cuda-ipc", token=TOKEN, **config_kw))
    tx.connect(peer.address)
    return peer, src, tx


@pytest.mark.gpu
def test_cuda_ipc_many_runs_and_reused_events_between_processes():
    """On a GPU: scattered blocks (the gather/scatter path) and more transfers
    in flight than event slots, each bit-exact once its ACK came."""
    n = cuda_ipc.EVENTS + 4
    peer, src, tx = _gpu_sender(PoolSpec(256, 2, 16, 2, 64, "bfloat16"), n)
    rng = random.Random(7)
    plans = []
    for i in range(n):
        dst_ids = rng.sample(range(256), 40) if i % 2 else list(range(i * 8, i * 8 + 8))
        plans.append((rng.sample(range(256), len(dst_ids)), dst_ids))
    handles = [tx.send(TransferMeta(f"g{i}", s, d, len(s) * 16, 0, 0)) for i, (s, d) in enumerate(plans)]
    assert [h.wait(30) for h in handles] == ["acked"] * n
    _, dst = peer.result()
    tx.close()
    final = {}
    for s, d in plans:  # later transfers overwrite earlier ones' blocks
        final.update(zip(d, s))
    dst_ids = sorted(final)
    assert torch.equal(dst[dst_ids].cpu(), src[[final[b] for b in dst_ids]].cpu())


def test_move_many_waits_once_copies_every_block_and_records_one_event(fake_cuda):
    """A group of sends: one wait for the engine's stream, each one's copies (the last, 28
    scattered blocks, through the gather/scatter path), one event whose slot the METAS frame names."""
    src, dst = _pools()
    tx = _sender(src, dst)
    config = TransferConfig(token="t")
    rng = random.Random(3)
    dst_free = rng.sample(range(64), 60)
    plans = [(rng.sample(range(64), n), [dst_free.pop() for _ in range(n)]) for n in (1, 3, 8, 28)]
    items = [(seq, prepare(src, SPEC, SPEC, TransferMeta(f"r{seq}", s, d, len(s) * SPEC.block_size, 0, 0), config,
                           tx._pool_bytes)) for seq, (s, d) in enumerate(plans, start=5)]
    assert len(items[-1][1].runs) > cuda_ipc.MAX_COPY_CALLS
    assert tx._move_many(items) == {"event": 1}  # the sender's first record
    for s, d in plans:
        for a, b in zip(s, d):
            assert torch.equal(dst[b], src[a])
    assert tx._stream.waits == 1 and len(tx._written.records) == 1
    assert sum(len(e.records) for e in tx._events) == 1 and len(tx._events[1].records) == 1
    assert tx._stream.syncs == 0


@pytest.mark.gpu
def test_cuda_ipc_send_many_between_processes():
    """On a GPU: a group of sends (scattered and contiguous blocks, more than the event slots and
    than max_inflight) moved by send_many; each bit-exact once acked."""
    n = cuda_ipc.EVENTS + 8
    peer, src, tx = _gpu_sender(PoolSpec(512, 2, 16, 2, 64, "bfloat16"), n, max_inflight=8)
    rng = random.Random(11)
    scattered = rng.sample(range(6 * n, 512), 512 - 6 * n)  # odd sends: 20 scattered blocks each
    plans = []
    for i in range(n):  # even sends: 6 consecutive blocks each, below 6 * n
        dst_ids = [scattered.pop() for _ in range(20)] if i % 2 else list(range(6 * i, 6 * i + 6))
        plans.append((rng.sample(range(512), len(dst_ids)), dst_ids))
    _send_many_bit_exact(peer, src, tx, plans, "g")


def _send_many_bit_exact(peer, src, tx, plans: list, prefix: str) -> None:
    """send_many of `plans` ((src ids, dst ids) each), every one acked, then the receiver's pool
    checked block by block; the sender is closed."""
    handles = tx.send_many([TransferMeta(f"{prefix}{i}", s, d, len(s) * 16, 0, 0) for i, (s, d) in enumerate(plans)])
    assert [h.wait(30) for h in handles] == ["acked"] * len(plans)
    _, dst = peer.result()
    tx.close()
    for s, d in plans:
        assert torch.equal(dst[d].cpu(), src[s].cpu())


@pytest.mark.gpu
def test_cuda_ipc_runtime_and_torch_copies_agree_between_processes(monkeypatch):
    """On a GPU: the ctypes cudaMemcpyAsync path is the one a sender takes where the runtime is
    loaded, and it lands the same bytes as copy_ (DOCPIPE_CUDA_IPC_COPY=torch)."""
    from inference.transfer import cuda_memcpy

    spec, n = PoolSpec(256, 2, 16, 2, 64, "bfloat16"), 4
    for mode in ("runtime", "torch"):
        monkeypatch.setenv(cuda_memcpy.COPY_ENV, mode)
        peer, src, tx = _gpu_sender(spec, n)
        if mode == "runtime" and tx._runtime is None:
            pytest.skip(f"no usable CUDA runtime mapped ({cuda_memcpy.loaded_runtimes()}, torch CUDA {torch.version.cuda}): "
                        "linked statically, or not torch's alone")
        assert (tx._runtime is None) == (mode == "torch")
        plans = [(list(range(40 * i, 40 * i + 30)), list(range(200 - 40 * i, 230 - 40 * i))) for i in range(n)]
        _send_many_bit_exact(peer, src, tx, plans, mode)


def test_a_chunk_by_runtime_lands_every_run_and_checks_them_all_first(fake_cuda):
    """A chunk through the ctypes path: one call per run on the side stream, every block landed;
    a chunk with one run outside the peer's pool issues no copy at all, not even the good items'."""
    src, dst = _pools()
    tx = _sender(src, dst)
    tx._runtime = rt = HostRuntime()
    cfg = TransferConfig(token="t")
    ids = {1: ([1, 2], [30, 31]), 2: ([5, 9], [40, 44]), 3: ([12], [50])}
    items = [(i, prepare(src, SPEC, SPEC, TransferMeta(f"r{i}", s, d, 4, 0, 0), cfg, tx._pool_bytes)) for i, (s, d) in ids.items()]
    assert tx._move_many(items) == {"event": 1}
    assert rt.calls == [(2 * SPEC.block_bytes, 0), (SPEC.block_bytes, 0), (SPEC.block_bytes, 0), (SPEC.block_bytes, 0)]
    for s_ids, d_ids in ids.values():
        for s, d in zip(s_ids, d_ids):
            assert torch.equal(dst[d], src[s])
    rt.calls.clear()
    tx._dst = flat_bytes(dst)[:45 * SPEC.block_bytes]  # a peer pool too short for the third item's block 50
    with pytest.raises(TransferError, match="outside the pools"):
        tx._move_many(items)
    assert rt.calls == []


@pytest.mark.parametrize("thread_device, fails", [(None, False), (3, False), (None, True)])
def test_chunk_copies_go_on_the_side_stream_before_its_event(fake_cuda, monkeypatch, thread_device, fails):
    """The ctypes copies of a chunk name the side stream, with no stream context when this thread's
    device is the pool's (CPU pools here: None) and inside one otherwise; the event is recorded on
    the side stream after them; a failed call re-copies the chunk with copy_ inside the context."""
    from inference.transfer import cuda_memcpy

    monkeypatch.setattr(cuda_memcpy, "_DISABLED", [])
    log = []
    monkeypatch.setattr(torch.cuda, "current_device", lambda: thread_device)

    @contextlib.contextmanager
    def stream_context(stream):
        log.append(("enter", stream.cuda_stream))
        yield
        log.append(("exit", stream.cuda_stream))
    monkeypatch.setattr(torch.cuda, "stream", stream_context)
    src, dst = _pools()
    tx = _sender(src, dst)
    tx._stream.cuda_stream = 77  # the side stream's own handle (the current stream's is 0)
    rt = HostRuntime()

    def runtime(d, s, n, handle):
        if fails and log:
            raise cuda_memcpy.RuntimeCopyError("cudaMemcpyAsync failed: invalid argument (1)")
        log.append(("copy", handle))
        rt(d, s, n, handle)
    tx._runtime = runtime
    tx._events[1].record = lambda stream: log.append(("record", stream.cuda_stream))
    cfg = TransferConfig(token="t")
    items = [(i, prepare(src, SPEC, SPEC, TransferMeta(f"r{i}", [i], [i + 30], 4, 0, 0), cfg, tx._pool_bytes)) for i in (1, 2, 5)]
    assert tx._move_many(items) == {"event": 1}
    if fails:
        assert log == [("copy", 77), ("enter", 77), ("exit", 77), ("record", 77)] and tx._runtime is None
    elif thread_device is None:
        assert log == [("copy", 77)] * 3 + [("record", 77)]
    else:
        assert log == [("enter", 77)] + [("copy", 77)] * 3 + [("exit", 77), ("record", 77)]
    for i in (1, 2, 5):
        assert torch.equal(dst[i + 30], src[i])
