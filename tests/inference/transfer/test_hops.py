"""A transfer's hop stamps (meta.HOPS): the sender's travel in the META header, the receiver adds
its own, and hop_spans turns them into the router's KV_HOPS spans; a tcp and an shm transfer end to
end in one process."""
import contextlib

import pytest

from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport
from inference.transfer.meta import HOPS, hop_spans, hop_stamps

from transfer_peers import TOKEN, random_pool

SPEC = PoolSpec(num_blocks=16, num_layers=2, block_size=16, num_kv_heads=2, head_dim=32, dtype="float32")


def test_stamps_keep_known_finite_numbers_only():
    assert hop_stamps({"send": 1, "sent": 2.5, "received": "3", "landed": True, "other": 4}) == {"send": 1.0, "sent": 2.5}
    assert hop_stamps(None) == {} and hop_stamps([1, 2]) == {}
    assert hop_stamps({"send": 10 ** 400, "sent": float("inf"), "received": float("nan"), "landed": 3}) == {"landed": 3.0}


def test_stamps_stay_off_the_wire_and_are_checked_off_a_queue():
    meta = TransferMeta("r", [1], [2], num_tokens=4, first_token_id=1, mrope_position_delta=0)
    meta.hops["queued"] = 5.0
    assert "hops" not in meta.to_wire() and "hops" not in TransferMeta.from_wire(meta.to_wire()).hops
    assert TransferMeta.from_dict(meta.to_dict()).hops == {"queued": 5.0}
    bad = {**meta.to_dict(), "hops": {"queued": "soon", "send": 10 ** 400, "sent": 7}}
    assert TransferMeta.from_dict(bad).hops == {"sent": 7.0}


def test_spans_between_consecutive_stamps_in_order():
    stamps = dict(zip(HOPS, (10.0, 10.5, 10.75, 11.0, 13.0, 13.5)))
    assert hop_spans(stamps) == pytest.approx({"kv_queue": 0.5, "kv_send": 0.25, "kv_wire": 0.25,
                                               "kv_copy_wait": 2.0, "kv_inbox": 0.5})
    del stamps["sent"]  # a missing stamp drops the two spans it bounds
    assert set(hop_spans(stamps)) == {"kv_queue", "kv_copy_wait", "kv_inbox"}
    assert "kv_wire" not in hop_spans({"sent": 5.0, "received": 4.0})  # out of order (another host's clock)


@contextlib.contextmanager
def _connected(name: str):
    """(receiver, sender connected to it) of transport `name`, in this process; both closed on leaving."""
    transport = select_transport(name)
    config = TransferConfig(token=TOKEN, timeout_s=5)
    receiver = transport.receiver_cls(transport.receiver_cls.allocate_pool(SPEC), config)
    address = receiver.start()
    sender = transport.sender_cls(random_pool(SPEC, seed=1), config)
    try:
        sender.connect(address)
        yield receiver, sender
    finally:
        sender.close()
        receiver.close()


@pytest.mark.parametrize("name", ["tcp", "shm"])
def test_malformed_stamps_never_fail_a_transfer(name, monkeypatch):
    """A peer whose META header carries malformed stamps (a bug of its own): every transfer still lands
    and the next one on the connection too; only the receiver's own stamps stay."""
    from inference.transfer import sender as sender_mod, shm_groups

    def bad(seq, meta, sent_at=None, **extra):
        return {"seq": seq, "meta": meta.to_wire(), **extra,
                "hops": {"send": 10 ** 400, "sent": float("nan"), "queued": "x"}}
    monkeypatch.setattr(sender_mod, "meta_header", bad)
    monkeypatch.setattr(shm_groups, "meta_header", bad)
    got = []
    with _connected(name) as (receiver, sender):
        for rid in ("r1", "r2"):
            meta = TransferMeta(rid, [1, 2], [3, 4], num_tokens=20, first_token_id=7, mrope_position_delta=0)
            assert sender.send(meta).wait(5) == "acked"
            got.append(receiver.recv(timeout_s=5))
    assert [m.request_id for m in got] == ["r1", "r2"]
    assert all(set(m.hops) == {"received", "landed"} for m in got)


@pytest.mark.parametrize("name", ["tcp", "shm"])
def test_a_transfer_arrives_with_every_stamp_in_order(name):
    with _connected(name) as (receiver, sender):
        meta = TransferMeta("r1", [1, 2], [3, 4], num_tokens=20, first_token_id=7, mrope_position_delta=0)
        meta.hops["queued"] = 0.0  # set by the prefill worker as it queues the send
        sender.send(meta).wait(5)
        got = receiver.recv(timeout_s=5)
    assert got is not None and got.request_id == "r1"
    stamps = [got.hops[k] for k in HOPS[:-1]]  # "dispatched" is the decode worker's
    assert stamps == sorted(stamps) and stamps[0] == 0.0
    assert set(hop_spans(got.hops)) == {"kv_queue", "kv_send", "kv_wire", "kv_copy_wait"}
