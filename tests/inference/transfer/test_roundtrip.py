"""Random KV blocks between two processes over shm and tcp: bit-exact at the
right destination blocks, untouched blocks stay zero, metadata intact
(prompt_token_ids too: a block-request-like prompt, int64 ids, none sent)."""
import pytest
import torch

from inference.transfer import PoolSpec, TransferConfig, TransferMeta, select_transport

from transfer_peers import TOKEN, RemoteReceiver, random_pool

SPEC = PoolSpec(num_blocks=48, num_layers=4, block_size=16, num_kv_heads=2, head_dim=64, dtype="bfloat16")  # 32 KiB blocks

TRANSFERS = [  # (src ids, dst ids): one long run, scattered ids, a reversed order
    (list(range(0, 12)), list(range(20, 32))),
    ([40, 3, 17, 18, 19, 7], [0, 1, 2, 3, 9, 10]),
    ([30, 29, 28], [47, 46, 45]),
]


def prompt(i: int, n: int) -> list[int] | None:
    """req-0: text around one image's pad ids; req-1: ids past int32; req-2: none sent (all of
    them fit a shm ring slot, so the METAs arrive in order)."""
    if i == 0:
        return [151644, 872, 198, 151652] + [151655] * (n - 8) + [151653, 198, 1, 2]
    if i == 1:
        return [(1 << 40) + k % 3 for k in range(n)]
    return None


@pytest.mark.parametrize("name", ["shm", "tcp"])
def test_two_process_roundtrip_is_bit_exact(name):
    src = random_pool(SPEC, seed=1)
    peer = RemoteReceiver(name, SPEC, expect=len(TRANSFERS))
    released = []
    t = select_transport(name, TransferConfig(transport=name, token=TOKEN))
    tx = t.sender_cls(src, TransferConfig(transport=name, token=TOKEN, min_unit_bytes=64 << 10), lambda m, why: released.append((m.request_id, why)))
    tx.connect(peer.address)
    handles = []
    for i, (s, d) in enumerate(TRANSFERS):
        meta = TransferMeta(f"req-{i}", s, d, num_tokens=len(s) * 16 - 3, first_token_id=100 + i, mrope_position_delta=-7 * i,
                            sampling_state={"temperature": 0.0, "seed": i}, prompt_token_ids=prompt(i, len(s) * 16 - 3))
        handles.append(tx.send(meta))  # several in flight before any wait
    assert [h.wait(20) for h in handles] == ["acked"] * len(TRANSFERS)
    metas, dst = peer.result()
    tx.close()
    assert sorted(released) == [(f"req-{i}", "acked") for i in range(len(TRANSFERS))]
    assert [m["request_id"] for m in metas] == [f"req-{i}" for i in range(len(TRANSFERS))]
    assert [m["prompt_token_ids"] for m in metas] == [prompt(i, len(s) * 16 - 3) for i, (s, _) in enumerate(TRANSFERS)]
    assert metas[2]["mrope_position_delta"] == -14 and metas[1]["sampling_state"] == {"temperature": 0.0, "seed": 1}
    written = set()
    for s, d in TRANSFERS:
        assert torch.equal(dst[d].view(torch.int16), src[s].view(torch.int16))  # bitwise
        written.update(d)
    untouched = [b for b in range(SPEC.num_blocks) if b not in written]
    assert torch.count_nonzero(dst[untouched].view(torch.int16)) == 0


@pytest.mark.parametrize("name", ["shm", "tcp"])
def test_meta_with_a_large_prompt_roundtrips(name):
    """700 random ids do not compress to a shm ring slot (1 KiB): the META goes as a socket frame."""
    src = random_pool(SPEC, seed=2)
    peer = RemoteReceiver(name, SPEC, expect=1)
    tx = select_transport(name, TransferConfig(transport=name, token=TOKEN)).sender_cls(
        src, TransferConfig(transport=name, token=TOKEN))
    tx.connect(peer.address)
    ids = torch.randint(0, 151_000, (700,), generator=torch.Generator().manual_seed(3)).tolist()
    blocks = list(range(700 // SPEC.block_size + 1))
    assert tx.send(TransferMeta("big", blocks, blocks, 700, 1, 0, prompt_token_ids=ids)).wait(20) == "acked"
    (m,), dst = peer.result()
    tx.close()
    assert m["request_id"] == "big" and m["prompt_token_ids"] == ids
    assert torch.equal(dst[blocks].view(torch.int16), src[blocks].view(torch.int16))
