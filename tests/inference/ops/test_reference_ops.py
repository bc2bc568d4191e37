"""The reference backend against direct formulas (it is the oracle for the
fast backends, so it gets its own check)."""
import torch
import torch.nn.functional as F

from inference.ops.reference import Ops


def _pool(num_blocks=6, layers=2, block_size=4, kv_heads=2, head_dim=8):
    return torch.zeros(num_blocks, layers, 2, block_size, kv_heads, head_dim)


def test_rms_norm_and_silu():
    ops, x, w = Ops(), torch.randn(5, 16), torch.randn(16)
    ref = w * x / torch.sqrt(x.pow(2).mean(-1, keepdim=True) + 1e-6)
    assert torch.allclose(ops.rms_norm(x, w, 1e-6), ref, atol=1e-6)
    y = torch.randn(3, 10)
    assert torch.allclose(ops.silu_and_mul(y), F.silu(y[:, :5]) * y[:, 5:])


def test_store_kv_writes_slots_of_a_layer_view():
    torch.manual_seed(0)
    ops, pool = Ops(), _pool()
    k, v = torch.randn(3, 2, 8), torch.randn(3, 2, 8)
    slots = torch.tensor([5, -1, 20])  # block 1 offset 1, skipped, block 5 offset 0
    ops.store_kv(k, v, pool[:, 1, 0], pool[:, 1, 1], slots)
    assert torch.equal(pool[1, 1, 0, 1], k[0]) and torch.equal(pool[5, 1, 1, 0], v[2])
    assert pool[:, 0].abs().sum() == 0  # other layer untouched
    assert torch.count_nonzero(pool) == torch.count_nonzero(k[[0, 2]]) + torch.count_nonzero(v[[0, 2]])


def test_paged_attention_matches_sdpa_over_chunks():
    torch.manual_seed(0)
    ops, pool, heads, length = Ops(), _pool(), 4, 10
    q, k, v = torch.randn(length, heads, 8), torch.randn(length, 2, 8), torch.randn(length, 2, 8)
    table = torch.tensor([[4, 0, 2]], dtype=torch.int32)
    slots = (table[0].long()[:, None] * 4 + torch.arange(4)).flatten()[:length]
    ops.store_kv(k, v, pool[:, 0, 0], pool[:, 0, 1], slots)
    ref = F.scaled_dot_product_attention(q.transpose(0, 1), k.repeat_interleave(2, 1).transpose(0, 1),
                                         v.repeat_interleave(2, 1).transpose(0, 1), is_causal=True).transpose(0, 1)
    # Second chunk (tokens 6..9) over the whole cached context.
    out = ops.prefill_attention(q[6:], pool[:, 0, 0], pool[:, 0, 1], torch.tensor([0, 4], dtype=torch.int32),
                                torch.tensor([length], dtype=torch.int32), table, 8 ** -0.5, 4, length)
    assert torch.allclose(out, ref[6:], atol=1e-5)
    dec = ops.decode_attention(q[-1:], pool[:, 0, 0], pool[:, 0, 1], table, torch.tensor([length], dtype=torch.int32), 8 ** -0.5)
    assert torch.allclose(dec, ref[-1:], atol=1e-5)


def test_vision_attention_is_per_image_and_bidirectional():
    ops = Ops()
    q, k, v = torch.randn(7, 2, 8), torch.randn(7, 2, 8), torch.randn(7, 2, 8)
    out = ops.vision_attention(q, k, v, torch.tensor([0, 3, 7], dtype=torch.int32), 4, 8 ** -0.5)
    for s, e in [(0, 3), (3, 7)]:
        ref = F.scaled_dot_product_attention(q[s:e].transpose(0, 1), k[s:e].transpose(0, 1), v[s:e].transpose(0, 1))
        assert torch.allclose(out[s:e], ref.transpose(0, 1), atol=1e-5)


def test_rotary_in_place_equals_rotary_on_qkv_views():
    """Ops.rotary_ (the base class's, the reference backend's): q and k views of a packed qkv get exactly
    rotary()'s values; v is untouched."""
    ops = Ops()
    qkv = torch.randn(9, 3, 4, 8, dtype=torch.float64)
    before = qkv.clone()
    angles = torch.rand(9, 8, dtype=torch.float64) * 10
    cos, sin = angles.cos(), angles.sin()
    q_new, k_new = ops.rotary(before[:, 0], before[:, 1], cos, sin)
    q, k, v = qkv.unbind(1)
    ops.rotary_(q, k, cos, sin)
    assert torch.equal(qkv[:, 0], q_new) and torch.equal(qkv[:, 1], k_new) and torch.equal(qkv[:, 2], before[:, 2])
    assert not torch.equal(q_new, before[:, 0])
