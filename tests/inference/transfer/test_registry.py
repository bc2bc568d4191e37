"""Selection by name, lazy imports, the rdma refusal and fallbacks, leases."""
import os
import threading

import pytest
import torch

from inference.transfer import (PoolSpec, TransferConfig, TransferError, TransferMeta, TransportUnavailable,
                                available_transports, select_transport)
from inference.transfer.rdma.device import SYSFS_DIR, check_available, sysfs_devices

from transfer_peers import TOKEN, random_pool

SPEC = PoolSpec(8, 2, 16, 2, 32, "float32")
HAS_RDMA = bool(sysfs_devices())


def test_unknown_name():
    with pytest.raises(TransportUnavailable, match="unknown transport 'carrier-pigeon'"):
        select_transport("carrier-pigeon")


@pytest.mark.skipif(HAS_RDMA, reason="this machine has an RDMA device")
def test_rdma_selection_fails_clearly_without_device():
    with pytest.raises(TransportUnavailable) as err:
        select_transport("rdma")
    msg = str(err.value)
    assert msg.startswith("rdma: no RDMA device found (/sys/class/infiniband ")
    assert "choose tcp or shm, or set fallback in the layout" in msg


def test_rdma_message_for_empty_sysfs(tmp_path):
    with pytest.raises(TransportUnavailable, match=rf"no RDMA device found \({tmp_path} is empty\)"):
        check_available(TransferConfig(), sysfs_dir=str(tmp_path))


def test_rdma_without_pyverbs_names_the_package(tmp_path):
    (tmp_path / "mlx5_0").mkdir()
    try:
        import pyverbs  # noqa: F401
        pytest.skip("pyverbs is installed here")
    except ImportError:
        pass
    with pytest.raises(TransportUnavailable, match="pyverbs is not importable"):
        check_available(TransferConfig(), sysfs_dir=str(tmp_path))


@pytest.mark.skipif(HAS_RDMA, reason="this machine has an RDMA device")
def test_rdma_fallback_to_tcp_moves_blocks():
    config = TransferConfig(transport="rdma", fallback="tcp", token=TOKEN)
    t = select_transport(config=config)
    assert t.name == "tcp"
    rx = t.receiver_cls(t.receiver_cls.allocate_pool(SPEC), config)
    tx = t.sender_cls(random_pool(SPEC), config)
    tx.connect(rx.start())
    assert tx.send(TransferMeta("fb", [2, 3], [5, 6], 20, 1, 0)).wait(5) == "acked"
    assert torch.equal(rx.pool[[5, 6]], tx.pool[[2, 3]])
    tx.close(); rx.close()


def test_available_transports_lists_reasons():
    avail = available_transports()
    assert avail["tcp"] is None and avail["fake"] is None
    assert (avail["rdma"] is None) == HAS_RDMA


def test_fake_transport_converts_dtype_and_block_size():
    t = select_transport("fake")
    src = random_pool(SPEC)
    dst_spec = PoolSpec(8, 2, 32, 2, 32, "bfloat16")
    rx = t.receiver_cls(t.receiver_cls.allocate_pool(dst_spec))
    tx = t.sender_cls(src)
    tx.connect(rx.start())
    assert tx.send(TransferMeta("cv", [4, 1, 6], [3, 0], 40, 0, 0)).wait(1) == "acked"
    tokens = torch.cat([src[4], src[1], src[6]], dim=2)[:, :, :40]  # [L, 2, 48, H, D] -> 40 tokens
    got = torch.cat([rx.pool[3], rx.pool[0]], dim=2)[:, :, :40]
    assert torch.equal(got, tokens.to(torch.bfloat16))


def test_lease_expiry_releases_source_blocks():
    """A receiver that lands slowly: the sender frees at lease expiry, once."""
    t = select_transport("tcp")
    gate = threading.Event()

    class SlowReceiver(t.receiver_cls):
        def _land(self, state, meta):
            gate.wait(5)

    config = TransferConfig(token=TOKEN, lease_s=0.3)
    rx = SlowReceiver(t.receiver_cls.allocate_pool(SPEC), config)
    released = []
    tx = t.sender_cls(random_pool(SPEC), config, lambda m, why: released.append((m.request_id, why)))
    tx.connect(rx.start())
    h = tx.send(TransferMeta("slow", [0], [1], 8, 0, 0))
    assert h.wait(3) == "lease_expired"
    gate.set()
    assert rx.recv(3).request_id == "slow"  # landed late; its late ACK is ignored
    assert released == [("slow", "lease_expired")]
    tx.close(); rx.close()


def test_send_checks_block_ids():
    t = select_transport("fake")
    rx = t.receiver_cls(t.receiver_cls.allocate_pool(SPEC))
    tx = t.sender_cls(random_pool(SPEC))
    tx.connect(rx.start())
    with pytest.raises(TransferError, match="outside the destination pool"):
        tx.send(TransferMeta("bad", [0], [99], 4, 0, 0))
    with pytest.raises(TransferError, match="twice"):
        tx.send(TransferMeta("dup", [0, 1], [2, 2], 20, 0, 0))


@pytest.mark.gpu
def test_cuda_ipc_roundtrip():
    if not torch.cuda.is_available():
        pytest.skip("cuda-ipc needs a CUDA device; this machine has none")
    from transfer_peers import RemoteReceiver
    spec = PoolSpec(16, 2, 16, 2, 64, "bfloat16")
    peer = RemoteReceiver("cuda-ipc", spec, expect=1)
    src = random_pool(spec).cuda()
    tx = select_transport("cuda-ipc").sender_cls(src, TransferConfig(transport="cuda-ipc", token=TOKEN))
    tx.connect(peer.address)
    assert tx.send(TransferMeta("g", [1, 2, 9], [4, 5, 0], 48, 0, 0)).wait(20) == "acked"
    _, dst = peer.result()
    tx.close()
    assert torch.equal(dst[[4, 5, 0]].cpu(), src[[1, 2, 9]].cpu())


@pytest.mark.rdma
@pytest.mark.skipif(not HAS_RDMA, reason=f"no RDMA device ({SYSFS_DIR} has no entries)")
def test_rdma_loopback():
    from transfer_peers import RemoteReceiver
    peer = RemoteReceiver("rdma", SPEC, expect=1)
    src = random_pool(SPEC)
    tx = select_transport("rdma").sender_cls(src, TransferConfig(transport="rdma", token=TOKEN,
                                                                 rdma_gid_index=int(os.environ.get("DOCPIPE_RDMA_GID", "0"))))
    tx.connect(peer.address)
    assert tx.send(TransferMeta("r", [0, 1, 2, 6], [7, 3, 4, 5], 60, 0, 0)).wait(20) == "acked"
    _, dst = peer.result()
    tx.close()
    assert torch.equal(dst[[7, 3, 4, 5]], src[[0, 1, 2, 6]])


def test_bench_transfer_names_unknown_peers():
    from typer.testing import CliRunner

    from docpipe.cli import app

    result = CliRunner().invoke(app, ["bench", "transfer", "--transports", "tcp", "--sizes", "64K", "--repeat", "1",
                                      "--peers", "nope"])
    assert result.exit_code != 0 and "unknown peer 'nope'" in result.output


def test_bench_peer_measures_one_at_a_time_and_grouped_sends():
    """`docpipe bench transfer`'s transport side on shm with small sizes: every transfer acked, figures
    positive, one at a time and then with the pipelined figure taken through send_many, as for a
    transport that moves groups (cuda-ipc, GPU only). One receiver process serves both (a spawn costs
    seconds)."""
    from inference.transfer.measure import TransportPeer

    peer = TransportPeer("shm", 1 << 20, TransferConfig(transport="shm", token="bench-peer-test"))
    calls, figs = [], []
    try:
        many = peer._tx.send_many
        peer._tx.send_many = lambda metas: calls.append(len(metas)) or many(metas)
        for grouped in (False, True):
            peer._tx.batches_sends = grouped
            figs.append(peer.measure(64 << 10, count=6, single_count=3))
            assert calls == ([6] if grouped else [])
        assert peer.mapped_copy(64 << 10, 2, 2) is None  # cuda-ipc only
    finally:
        peer.close()
    for fig in figs:
        assert fig.pipelined_gbps > 0 and fig.single_gbps > 0 and fig.latency_ms_p50 > 0 and fig.sent_gbps > 0
