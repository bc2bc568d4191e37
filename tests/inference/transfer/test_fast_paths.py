"""The per-transfer fast paths give the same answers as the plain ones:
coalescing (range / loop / numpy), block ids as runs on the wire, the plain
META built off the wire without the general path, the ACK reader's buffered
frames and its ACKS runs finished together, and handles latched without an
Event."""
import random
import socket
import threading
import time

import pytest

from inference.transfer import TransferMeta, wire
from inference.transfer.base import KVSender, TransferConfig, TransferHandle
from inference.transfer.meta import MAX_WIRE_IDS
from inference.transfer.plan import _LOOP_MAX_IDS, Run, coalesce_ids
from inference.transfer.sender_acks import AckReader, Stream


def _reference_runs(src, dst):
    pairs = sorted(zip(src, dst))
    runs = []
    for s, d in pairs:
        if runs and s == runs[-1][0] + runs[-1][2] and d == runs[-1][1] + runs[-1][2]:
            runs[-1][2] += 1
        else:
            runs.append([s, d, 1])
    return [Run(*r) for r in runs]


@pytest.mark.parametrize("n", [1, 7, _LOOP_MAX_IDS, _LOOP_MAX_IDS + 1, 3000])
def test_coalesce_paths_match_the_reference(n):
    rng = random.Random(n)
    cases = [(list(range(5, 5 + n)), list(range(100, 100 + n)))]  # one run: the range fast path
    dst = rng.sample(range(4 * n), n)
    src = [rng.randrange(4 * n) for _ in range(n)]
    cases.append((src, dst))  # scattered
    base = rng.randrange(100)
    cases.append(([base + i for i in range(n)], [base + i + (i // 9) for i in range(n)]))  # runs of 9
    for src, dst in cases:
        assert coalesce_ids(src, dst) == _reference_runs(src, dst)


@pytest.mark.parametrize("n", [10, _LOOP_MAX_IDS + 10])
def test_coalesce_refuses_duplicates_and_negatives_on_every_path(n):
    with pytest.raises(ValueError, match="twice"):
        coalesce_ids(list(range(n)), [0] + list(range(n - 1)))
    with pytest.raises(ValueError, match="negative"):
        coalesce_ids([-1] + list(range(1, n)), list(range(n)))


def test_meta_wire_runs_round_trip():
    ids = [7, 8, 9, 3, 4, 100, 99]
    meta = TransferMeta("r", ids, list(range(20, 27)), 90, 1, -3, {"t": 0.5}, 123.0)
    wire_form = meta.to_wire()
    assert wire_form["src_block_ids"] == [[7, 3], [3, 2], [100, 1], [99, 1]]
    assert wire_form["dst_block_ids"] == [[20, 7]]
    assert TransferMeta.from_wire(wire_form) == meta
    assert TransferMeta.from_wire(meta.to_dict()) == meta  # plain id lists are still read


@pytest.mark.parametrize("bad, match", [
    ([[0, MAX_WIRE_IDS + 1]], "more than"),
    ([[4, 0]], "empty"),
    ([[-3, 2]], "non-negative"),
])
def test_meta_wire_refuses_bad_runs(bad, match):
    d = TransferMeta("r", [0], [0], 1, 0, 0).to_wire()
    d["dst_block_ids"] = bad
    with pytest.raises(ValueError, match=match):
        TransferMeta.from_wire(d)


def test_meta_still_checks_types():
    with pytest.raises(ValueError, match="src_block_ids"):
        TransferMeta("r", [1, True], [0, 1], 1, 0, 0)
    with pytest.raises(ValueError, match="first_token_id"):
        TransferMeta("r", [1], [0], 1, 2.0, 0)


def test_small_frame_reader_splits_and_joins_frames():
    a, b = socket.socketpair()
    reader = wire.SmallFrameReader(b)
    two = b"".join(wire.frame_buffers(wire.ACK, {"seq": i, "ok": True})[0] for i in (1, 2))
    third = wire.frame_buffers(wire.ACK, {"seq": 3, "ok": False, "error": "x"})[0]
    a.sendall(two + third[:7])
    assert [h["seq"] for _, h in reader.read()] == [1, 2]  # the partial third waits
    a.sendall(third[7:])
    assert reader.read() == [(wire.ACK, {"seq": 3, "ok": False, "error": "x"})]
    a.sendall(wire.frame_buffers(wire.DATA, {}, [b"abc"])[0] + b"abc")
    with pytest.raises(wire.FrameError, match="payload"):
        reader.read()
    a.close()
    with pytest.raises(wire.PeerClosed):
        wire.SmallFrameReader(b).read()
    b.close()


def test_handle_finishes_once_and_wakes_waiters():
    h = TransferHandle(TransferMeta("r", [0], [0], 1, 0, 0))
    with pytest.raises(TimeoutError):
        h.wait(0.01)
    got = []
    waiters = [threading.Thread(target=lambda: got.append(h.wait(5))) for _ in range(3)]
    for t in waiters:
        t.start()
    assert h._finish("acked") and not h._finish("lease_expired")
    for t in waiters:
        t.join(5)
    assert got == ["acked"] * 3 and h.done and h.status == "acked"
    assert TransferHandle.finished(h.meta, "acked").wait(0) == "acked"


def test_bench_compares_dlslime_with_our_send_and_with_our_ack():
    from docpipe.bench.transfer import summarize

    ours = [{"pipelined_gbps": 2.0, "single_gbps": 1.0, "latency_ms_p50": 4.0, "sent_gbps": s} for s in (3.0, 4.0, 5.0)]
    rows = [{"ours": ours, "baseline_figures": [{"pipelined_gbps": 2.0, "single_gbps": 2.0, "latency_ms_p50": 2.0}],
             "peers": {"dlslime": [{"single_gbps": 2.0}, {"single_gbps": 2.0}]}}]
    summarize(rows)
    r = rows[0]
    assert r["ours_sent_gbps"] == 4.0 and r["ratio_vs_dlslime_sent"] == 2.0 and r["ratio_vs_dlslime_single"] == 0.5
    assert r["ratio_pipelined"] == 1.0 and r["ratio_single"] == 0.5


@pytest.mark.parametrize("whole_run_bytes", [None, 4 << 20])  # the 5 MiB run cut into pieces, or copied whole
def test_shared_copy_moves_every_byte_once(monkeypatch, whole_run_bytes):
    import torch

    from inference.transfer import memcopy

    monkeypatch.setattr(memcopy, "WHOLE_RUN_BYTES", whole_run_bytes)

    src = torch.randint(0, 255, (12 << 20,), dtype=torch.uint8)
    dst = torch.zeros_like(src)
    s, d = src.data_ptr(), dst.data_ptr()
    # one large run cut into pieces, a run not a multiple of a piece, a small one
    runs = [(0, 1 << 20, 5 << 20), (6 << 20, 7 << 20, (3 << 20) + 12345), (11 << 20, 100, 4096)]
    assert sum(n for _, _, n in runs) >= memcopy.SHARE_MIN_BYTES  # the shared path, not one thread alone
    for _ in range(3):  # helpers reused across jobs
        dst.zero_()
        memcopy.copy([(d + do, s + so, n) for so, do, n in runs])
        expect = torch.zeros_like(src)
        for so, do, n in runs:
            expect[do:do + n] = src[so:so + n]
        assert torch.equal(dst, expect)


def test_shared_copy_of_nothing_returns():
    from inference.transfer import memcopy

    memcopy.copy([])  # an empty transfer must not wait for a piece that never comes


@pytest.mark.parametrize("raw", [b'{"seq":1,"meta":{"a":[[0,64]],"t":1796002009.0672715}}', b'{"x":NaN}',
                                 b'{"big":123456789012345678901234567890}', b'[-9223372036854775809]', b'{"k":1,"k":2}', b'[1,2]', b'"s"'])
def test_loads_json_gives_what_json_gives(raw):
    """The fast parser and its fallback: the same objects as json.loads, also for what only json
    accepts (NaN) or reads exactly (ints past 64 bits, either sign)."""
    import json
    import math

    got, want = wire.loads_json(raw), json.loads(raw)
    if isinstance(want, dict) and isinstance(want.get("x"), float) and math.isnan(want["x"]):
        assert math.isnan(got["x"])
    else:
        assert got == want and type(got) is type(want)


def test_loads_json_raises_json_errors():
    import json

    for raw in (b"{oops", b"\xff\xfe", b""):
        with pytest.raises((json.JSONDecodeError, UnicodeDecodeError)):
            wire.loads_json(raw)


def test_encode_json_writes_what_json_writes():
    """The fast encoder and its fallback: parsed back, the values json.dumps writes, non-finite floats
    included; what json refuses (a dataclass, a set) is refused too."""
    import dataclasses
    import enum
    import json
    import math

    class Kind(enum.IntEnum):
        A = 3

    obj = {"a": [1, 2.5, True, None, "x\u00e9"], "b": {"n": math.nan, "i": -math.inf}, "k": Kind.A, "big": 1 << 70}
    got = json.loads(wire.encode_json(obj))
    assert json.dumps(got, sort_keys=True) == json.dumps(json.loads(json.dumps(obj)), sort_keys=True)
    plain = {"seq": 1, "meta": {"t": 1796002009.0672715, "s": None}}
    assert json.loads(wire.encode_json(plain)) == plain

    @dataclasses.dataclass
    class D:
        x: int = 1
    for bad in (D(), {1, 2}):
        with pytest.raises(TypeError):
            wire.encode_json({"v": bad})


def _general_from_wire(d):
    """The general path's answer for d: with an explicit prompt_token_ids=None the plain-META fast
    path does not apply (its key set differs), and None is what an absent prompt means."""
    return TransferMeta.from_wire({**d, "prompt_token_ids": None})


def _outcome(fn, d):
    try:
        return fn(d)
    except ValueError as e:
        return type(e)


@pytest.mark.parametrize("field, bad", [
    ("request_id", ""), ("request_id", 7), ("num_tokens", -1), ("num_tokens", 2.0), ("num_tokens", True),
    ("first_token_id", None), ("mrope_position_delta", "0"), ("sampling_state", []), ("lease_expiry_unix_s", "1"),
    ("lease_expiry_unix_s", True), ("src_block_ids", [[0, 0]]), ("src_block_ids", [[-1, 2]]), ("dst_block_ids", [[0, 2], [9, 1]]),
    ("dst_block_ids", [[True, 2]]), ("src_block_ids", [[0, MAX_WIRE_IDS + 1]]), ("dst_block_ids", [0, 1]),
    ("src_block_ids", [(0, 2)]), ("num_tokens", 1 << 70),
])
def test_plain_meta_fast_path_decides_as_the_general_path(field, bad):
    """The receiver's fast path for the common META gives what the general path gives: the same
    meta for what it accepts, the same refusal (or acceptance, e.g. a bool lease) otherwise."""
    good = TransferMeta("r7", list(range(4, 6)), list(range(30, 32)), 20, 11, -3, {"temperature": 0.0}, 1.8e9).to_wire()
    assert TransferMeta._from_plain_wire(good) == _general_from_wire(good)  # the fast path takes it, and agrees
    assert TransferMeta.from_wire(good) == _general_from_wire(good)
    assert TransferMeta.from_wire(good).hops == {} and TransferMeta.from_wire(good).prompt_token_ids is None
    d = {**good, field: bad}
    assert _outcome(TransferMeta.from_wire, d) == _outcome(_general_from_wire, d)


def test_plain_meta_fast_path_leaves_the_callers_dict_alone():
    d = TransferMeta("r", [3, 4], [5, 6], 20, 1, 0).to_wire()
    before = repr(d)
    meta = TransferMeta.from_wire(d)
    assert repr(d) == before and meta.src_block_ids.runs == ((3, 2),) and meta.dst_block_ids.runs == ((5, 2),)


class _AckHost(AckReader, KVSender):
    """A sender with only the state the ACK reader uses (no socket); `released` is for its
    on_release to fill."""

    name, self_acks = "t", False

    def __init__(self, limit, on_release):
        self.config, self.on_release = TransferConfig(token="x", max_inflight=limit), on_release
        self._room = threading.Condition(threading.Lock())
        self._pending, self._streams, self.released = {}, [Stream(0, None)], []
        self._moving, self._deferred = set(), {}

    def _quiesce(self):
        pass


def test_acks_frame_finishes_in_order_and_stops_at_a_malformed_item():
    """An ACKS frame's plain ok items are finished together, a refusal alone, in order; a malformed
    item raises after every item before it was finished (and nothing after it was)."""
    host = _AckHost(6, lambda meta, status: host.released.append((meta.request_id, status)))
    for seq in range(6):
        host._pending[seq] = TransferHandle(TransferMeta(f"r{seq}", [seq], [seq], 1, 0, 0))
        host._streams[0].seqs[seq] = 1
    handles = dict(host._pending)
    woke = []

    def wait_for_room():  # a send() of a full sender: only a notify wakes it before its 5 s
        with host._room:
            while len(host._pending) >= 6:
                if not host._room.wait(5):
                    woke.append(False)
                    return
            woke.append(True)

    waiter = threading.Thread(target=wait_for_room)
    waiter.start()
    for _ in range(500):  # until it waits on the condition (so only a notify can wake it in time)
        if host._room._waiters:
            break
        time.sleep(0.01)
    assert host._room._waiters
    items = [{"seq": 0, "ok": True}, {"seq": 1, "ok": True}, {"seq": 2, "ok": False, "error": "no room"},
             {"seq": 3, "ok": True}, {"seq": "4", "ok": True}, {"seq": 5, "ok": True}]
    with pytest.raises(wire.FrameError, match="integer seq"):
        host._on_frame(wire.ACKS, {"items": items})
    waiter.join(5)
    assert woke == [True]  # the send waiting for room was woken
    assert [handles[s].status for s in range(6)] == ["acked", "acked", "failed", "acked", "pending", "pending"]
    assert handles[2].error == "no room"
    assert host.released == [("r0", "acked"), ("r1", "acked"), ("r2", "failed"), ("r3", "acked")]
    assert sorted(host._pending) == [4, 5] and sorted(host._streams[0].seqs) == [4, 5]


def test_acks_frame_releases_every_transfer_even_when_a_release_raises(caplog):
    """A release callback that raises for one transfer of an ACKS run: logged, and the others are
    still finished and released (taken out of the pending set, nothing else would)."""
    def on_release(meta, status):
        host.released.append(meta.request_id)
        if meta.request_id == "r1":
            raise RuntimeError("the owner failed to free r1")

    host = _AckHost(8, on_release)
    handles = {seq: TransferHandle(TransferMeta(f"r{seq}", [seq], [seq], 1, 0, 0)) for seq in range(4)}
    host._pending.update(handles)
    items = [{"seq": 0, "ok": True}, {"seq": 1, "ok": True}, {"seq": 2, "ok": False, "error": "x"}, {"seq": 3, "ok": True}]
    with caplog.at_level("ERROR", logger="inference.transfer.sender"):
        host._on_frame(wire.ACKS, {"items": items})
    assert host.released == ["r0", "r1", "r2", "r3"] and [handles[s].status for s in range(4)] == ["acked", "acked", "failed", "acked"]
    assert host._pending == {} and any("releasing transfer r1" in r.getMessage() for r in caplog.records)
