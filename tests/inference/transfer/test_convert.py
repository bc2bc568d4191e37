"""Conversion (dtype, block size, KV heads) against a plain per-token gather."""
import math

import pytest
import torch

from inference.transfer import convert
from inference.transfer.base import PoolSpec

LAYERS, HEADS, DIM = 3, 4, 8


def make_pool(num_blocks, block_size, dtype=torch.float32, heads=HEADS, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.randn((num_blocks, LAYERS, 2, block_size, heads, DIM), generator=g).to(dtype)


def plain_gather(pool, block_ids, num_tokens):
    """Reference: token t lives in block ids[t // bs] at slot t % bs."""
    bs = pool.shape[3]
    return torch.stack([pool[block_ids[t // bs], :, :, t % bs] for t in range(num_tokens)], dim=2)


def unpack(blocks, num_tokens):
    return plain_gather(blocks, list(range(blocks.shape[0])), num_tokens)


@pytest.mark.parametrize("num_tokens", [1, 16, 37, 64])
def test_gather_tokens_matches_plain_gather(num_tokens):
    pool = make_pool(10, 16)
    ids = [7, 2, 9, 0][: math.ceil(num_tokens / 16)]
    assert torch.equal(convert.gather_tokens(pool, ids, num_tokens), plain_gather(pool, ids, num_tokens))


@pytest.mark.parametrize("src_bs,dst_bs,num_tokens", [(16, 32, 45), (32, 16, 45), (16, 32, 64), (32, 16, 17)])
def test_block_size_repack(src_bs, dst_bs, num_tokens):
    pool = make_pool(12, src_bs)
    ids = [11, 3, 5, 0][: math.ceil(num_tokens / src_bs)]
    dst = PoolSpec(8, LAYERS, dst_bs, HEADS, DIM, "float32")
    out = convert.repack(pool, ids, num_tokens, dst)
    assert out.shape == (math.ceil(num_tokens / dst_bs), LAYERS, 2, dst_bs, HEADS, DIM)
    assert torch.equal(unpack(out, num_tokens), plain_gather(pool, ids, num_tokens))
    tail = out.shape[0] * dst_bs - num_tokens  # padding slots of the last block stay zero
    if tail:
        assert torch.count_nonzero(out[-1, :, :, dst_bs - tail:]) == 0


def test_dtype_fp32_to_bf16():
    pool = make_pool(6, 16)
    dst = PoolSpec(8, LAYERS, 16, HEADS, DIM, "bfloat16")
    out = convert.repack(pool, [4, 1], 30, dst)
    assert out.dtype == torch.bfloat16
    assert torch.equal(unpack(out, 30), plain_gather(pool, [4, 1], 30).to(torch.bfloat16))


def test_head_split_for_tp2_and_merge_back():
    pool = make_pool(6, 16)
    dst = PoolSpec(8, LAYERS, 32, HEADS // 2, DIM, "bfloat16")
    parts = [convert.repack(pool, [2, 5, 0], 40, dst, head_offset=r * (HEADS // 2)) for r in range(2)]
    ref = plain_gather(pool, [2, 5, 0], 40).to(torch.bfloat16)
    for r, part in enumerate(parts):
        assert torch.equal(unpack(part, 40), ref[..., r * 2:(r + 1) * 2, :])
    assert torch.equal(unpack(convert.merge_heads(parts), 40), ref)


def test_split_heads_inverse_of_merge():
    blocks = make_pool(3, 16)
    parts = convert.split_heads(blocks, 4)
    assert [p.shape[4] for p in parts] == [1, 1, 1, 1]
    assert torch.equal(convert.merge_heads(parts), blocks)
    with pytest.raises(ValueError, match="equal parts"):
        convert.split_heads(blocks, 3)


def test_destination_with_more_heads_is_refused():
    pool = make_pool(4, 16, heads=2)
    with pytest.raises(ValueError, match="merge"):
        convert.repack(pool, [0], 10, PoolSpec(4, LAYERS, 16, 4, DIM, "float32"))


def test_too_few_source_blocks():
    with pytest.raises(ValueError, match="need 3 blocks"):
        convert.gather_tokens(make_pool(4, 16), [0, 1], 40)
