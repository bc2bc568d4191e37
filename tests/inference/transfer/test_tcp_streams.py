"""tcp over several connections (TransferConfig.tcp_streams): every stream
authenticates, transfers spread over the streams and land bit-exact, and a
lost stream fails only the transfers sent on it (caller told, blocks
released) while the others go on."""
import threading
import time

import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferError, TransferMeta, select_transport
from inference.transfer import listener as listener_mod
from inference.transfer.tcp import TcpReceiver

from transfer_peers import TOKEN, random_pool

SPEC = PoolSpec(num_blocks=32, num_layers=2, block_size=16, num_kv_heads=2, head_dim=32, dtype="float32")  # 16 KiB blocks


class GatedReceiver(TcpReceiver):
    """Records which connection each transfer came on; holds DATA frames
    until `gate` is set, so transfers stay unacked while a test acts."""

    def __init__(self, pool, config):
        super().__init__(pool, config)
        self.gate = threading.Event()
        self.gate.set()
        self.peers: dict[str, str] = {}  # request id -> peer address of its connection

    def _on_data(self, sock, state, hdr, payload_len):
        self.gate.wait(10)
        super()._on_data(sock, state, hdr, payload_len)

    def _on_meta(self, state, hdr):
        ack = super()._on_meta(state, hdr)
        self.peers[hdr["meta"]["request_id"]] = state["peer"]
        return ack


@pytest.fixture
def receiver():
    rx = GatedReceiver(TcpReceiver.allocate_pool(SPEC), TransferConfig(token=TOKEN, timeout_s=5))
    rx.start()
    yield rx
    rx.gate.set()
    rx.close()


def _sender(streams: int, released: list, **cfg):
    config = TransferConfig(token=TOKEN, tcp_streams=streams, **cfg)
    return select_transport("tcp").sender_cls(random_pool(SPEC, seed=3), config, lambda m, why: released.append((m.request_id, why)))


def _meta(name: str, src: list[int], dst: list[int]) -> TransferMeta:
    return TransferMeta(name, src, dst, num_tokens=len(src) * 16, first_token_id=7, mrope_position_delta=0)


def _until(cond, timeout_s: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout_s
    while not cond() and time.monotonic() < deadline:
        time.sleep(0.01)
    return cond()


def test_each_stream_authenticates_and_transfers_spread_bit_exact(receiver, monkeypatch):
    handshakes = []
    real = listener_mod.server_handshake
    monkeypatch.setattr(listener_mod, "server_handshake", lambda sock, token, peer: (handshakes.append(peer), real(sock, token, peer))[1])
    released = []
    tx = _sender(3, released, min_unit_bytes=16 << 10, max_unit_bytes=32 << 10)  # several DATA frames a transfer
    tx.connect(receiver.address)
    assert len(handshakes) == 3 and len(set(handshakes)) == 3  # one HMAC handshake per connection
    plan = [(list(range(4 * i, 4 * i + 4)), list(range(31 - 4 * i, 27 - 4 * i, -1))) for i in range(6)]
    handles = [tx.send(_meta(f"r{i}", s, d)) for i, (s, d) in enumerate(plan)]  # all in flight at once
    assert [h.wait(10) for h in handles] == ["acked"] * len(plan)
    got = {receiver.recv(5).request_id for _ in plan}
    tx.close()
    assert got == {f"r{i}" for i in range(len(plan))}
    assert sorted(released) == sorted((f"r{i}", "acked") for i in range(len(plan)))
    assert len(set(receiver.peers.values())) == 3  # every stream carried transfers
    src = random_pool(SPEC, seed=3)
    for s, d in plan:
        assert torch.equal(receiver.pool[d].view(torch.int32), src[s].view(torch.int32))  # bitwise, whole transfer on one stream


def test_one_stream_keeps_send_order(receiver):
    released = []
    tx = _sender(1, released)
    tx.connect(receiver.address)
    handles = [tx.send(_meta(f"o{i}", [i], [i])) for i in range(8)]
    assert [h.wait(10) for h in handles] == ["acked"] * 8
    assert [receiver.recv(5).request_id for _ in range(8)] == [f"o{i}" for i in range(8)]
    assert len(set(receiver.peers.values())) == 1
    tx.close()


def test_lost_stream_fails_only_its_transfers(receiver):
    released = []
    tx = _sender(3, released)
    tx.connect(receiver.address)
    receiver.gate.clear()  # nothing lands, nothing is acked yet
    handles = [tx.send(_meta(f"l{i}", [i], [i])) for i in range(3)]  # least-loaded pick: one per stream
    lost = next(st for st in tx._streams if st.index == 1)
    (lost_seq,) = lost.seqs
    lost_name = handles[lost_seq - 1].meta.request_id
    [conn] = [c for c in receiver._listener._conns if c.getpeername() == lost.sock.getsockname()]
    conn.shutdown(2)  # the receiver's end of stream 1 goes away
    assert handles[lost_seq - 1].wait(5) == "failed"
    assert _until(lambda: (lost_name, "failed") in released)  # the caller is told (after the handle): it frees the blocks
    receiver.gate.set()
    others = [h for h in handles if h.meta.request_id != lost_name]
    assert [h.wait(10) for h in others] == ["acked", "acked"]
    more = [tx.send(_meta(f"m{i}", [8 + i], [8 + i])) for i in range(4)]  # the live streams go on
    assert [h.wait(10) for h in more] == ["acked"] * 4
    assert all(seq not in lost.seqs for seq in range(1, 8)) and not lost.alive
    names = set()
    while (m := receiver.recv(0.5)) is not None:
        names.add(m.request_id)
    # the lost one may have landed before its ACK was lost: the sender said failed, the decode side may drop it
    assert {h.meta.request_id for h in others + more} <= names <= {h.meta.request_id for h in others + more} | {lost_name}
    for st in tx._streams:
        if st.alive:
            st.sock.shutdown(2)
    for st in tx._streams:
        st.reader.join(5)
    with pytest.raises(TransferError, match="went away"):
        tx.send(_meta("late", [1], [1]))
    tx.close()


def test_stream_count_is_validated(monkeypatch):
    with pytest.raises(ValueError, match="tcp_streams"):
        TransferConfig(tcp_streams=0)
    monkeypatch.setenv("DOCPIPE_TCP_STREAMS", "many")
    with pytest.raises(ValueError, match="DOCPIPE_TCP_STREAMS"):
        TransferConfig()
    monkeypatch.setenv("DOCPIPE_TCP_STREAMS", "3")
    assert TransferConfig().tcp_streams == 3


def test_a_meta_that_fails_to_build_leaves_no_last_frame(receiver, monkeypatch):
    """The last DATA frame rides with the META: if the META's header cannot be built after the move,
    the send fails (the caller releases it) and the frame kept for it goes too."""
    from inference.transfer import sender as sender_mod

    released: list = []
    tx = _sender(1, released)
    tx.connect(receiver.address)
    real = sender_mod.meta_header

    def broken(seq, meta, *args, **kwargs):
        if meta.request_id == "bad":
            raise ValueError("header cannot be built")
        return real(seq, meta, *args, **kwargs)
    monkeypatch.setattr(sender_mod, "meta_header", broken)
    try:
        with pytest.raises(ValueError, match="cannot be built"):
            tx.send(_meta("bad", [1, 2], [3, 4]))
        assert tx._last_frame == {} and released == []  # the caller ends it
        assert tx.send(_meta("good", [5], [6])).wait(5) == "acked"
    finally:
        tx.close()
