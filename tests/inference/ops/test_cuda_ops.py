"""The CUDA op backend against the pure-torch reference backend.

The reference runs on float64 copies of the same inputs. Pass mark:
‖out − ref‖ / ‖ref‖ ≤ 1e-2 for bf16 operands, ≤ 1e-5 for fp32, and no NaN.
Before each op the caching allocator's free memory is filled with NaN, so an
output element the kernel never wrote shows up as NaN and fails.
"""
from __future__ import annotations

import math

import pytest
import torch

from op_checks import poison, rel_err

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="CUDA backend kernels need a CUDA device"),
]

DEV = "cuda"
TOL = {torch.bfloat16: 1e-2, torch.float32: 1e-5}
DTYPES = [torch.bfloat16, torch.float32]
# MinerU2.5 LM attention: 14 query heads over 2 KV heads of 64 dims
HEADS, KV_HEADS, HEAD_DIM = 14, 2, 64


def paged_pool(lens: list[int], block_size: int, dtype: torch.dtype, num_layers: int = 3, layer: int = 1):
    """A random pool with each sequence's blocks scattered in it; returns
    (pool, k_cache view, v_cache view, block_tables padded with 0)."""
    per_seq = [math.ceil(n / block_size) for n in lens]
    width = max(per_seq) + 1  # a padded column, as the engine's tables have
    num_blocks = sum(per_seq) + 3
    pool = torch.randn(num_blocks, num_layers, 2, block_size, KV_HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    ids = torch.randperm(num_blocks, device=DEV).to(torch.int32)
    table = torch.zeros(len(lens), width, dtype=torch.int32, device=DEV)
    used = 0
    for row, n in enumerate(per_seq):
        table[row, :n] = ids[used:used + n]
        used += n
    return pool, pool[:, layer, 0], pool[:, layer, 1], table


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(37, 896), (2, 5, 1280)])
def test_rms_norm(ops, ref, dtype, shape):
    x = torch.randn(shape, dtype=dtype, device=DEV) * 3
    w = torch.randn(shape[-1], dtype=dtype, device=DEV)
    poison()
    out = ops.rms_norm(x, w, 1e-6)
    assert out.shape == x.shape and out.dtype == dtype
    assert rel_err(out, ref.rms_norm(x.double(), w.double(), 1e-6)) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_silu_and_mul(ops, ref, dtype):
    x = torch.randn(33, 2 * 4864, dtype=dtype, device=DEV) * 2
    poison()
    out = ops.silu_and_mul(x)
    assert out.shape == (33, 4864)
    assert rel_err(out, ref.silu_and_mul(x.double())) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_quick_gelu(ops, ref, dtype):
    x = torch.randn(37, 5120, dtype=dtype, device=DEV) * 3
    poison()
    out = ops.quick_gelu(x)
    assert out.shape == x.shape and out.dtype == dtype
    assert rel_err(out, ref.quick_gelu(x.double())) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_layer_norm(ops, ref, dtype):
    # the vision stream: 1280 wide (not a power of two), a bias, a residual of another scale
    x = torch.randn(53, 1280, dtype=dtype, device=DEV) * 2 + 0.5
    r = torch.randn(53, 1280, dtype=dtype, device=DEV)
    w, b = torch.randn(1280, dtype=dtype, device=DEV), torch.randn(1280, dtype=dtype, device=DEV)
    poison()
    total, normed = ops.add_layer_norm(x, r, w, b, 1e-6)
    total_ref, normed_ref = ref.add_layer_norm(x.double(), r.double(), w.double(), b.double(), 1e-6)
    assert total.dtype == normed.dtype == dtype and normed.shape == x.shape
    assert rel_err(total, total_ref) <= TOL[dtype] and rel_err(normed, normed_ref) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_add_rms_norm(ops, ref, dtype):
    x = torch.randn(29, 896, dtype=dtype, device=DEV) * 3
    r = torch.randn(29, 896, dtype=dtype, device=DEV)
    w = torch.randn(896, dtype=dtype, device=DEV)
    poison()
    total, normed = ops.add_rms_norm(x, r, w, 1e-6)
    total_ref, normed_ref = ref.add_rms_norm(x.double(), r.double(), w.double(), 1e-6)
    assert rel_err(total, total_ref) <= TOL[dtype] and rel_err(normed, normed_ref) <= TOL[dtype]
    # same numerics as the unfused add + rms_norm kernel of this backend
    assert rel_err(normed, ops.rms_norm(x + r, w, 1e-6)) <= (1e-3 if dtype == torch.bfloat16 else 1e-6)


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_on_strided_views(ops, ref, dtype):
    tokens = 45
    qkv = torch.randn(tokens, HEADS + 2 * KV_HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    q, k = qkv[:, :HEADS], qkv[:, HEADS:HEADS + KV_HEADS]  # views, as a fused projection yields
    angles = torch.rand(tokens, HEAD_DIM, device=DEV) * 100
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    poison()
    q_out, k_out = ops.rotary(q, k, cos, sin)
    q_ref, k_ref = ref.rotary(q.double(), k.double(), cos.double(), sin.double())
    assert rel_err(q_out, q_ref) <= TOL[dtype] and rel_err(k_out, k_ref) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_rotary_in_place_on_packed_qkv(ops, ref, dtype):
    """rotary_ (the vision encoder's call): q and k, views of one packed [T, 3, H, D] qkv, get the rotated
    values; v and every other element of the buffer stay as they were."""
    tokens, heads, dim = 45, 16, 80
    qkv = torch.randn(tokens, 3, heads, dim, dtype=dtype, device=DEV)
    before = qkv.clone()
    q, k, v = qkv.unbind(1)
    angles = torch.rand(tokens, dim, device=DEV) * 100
    cos, sin = angles.cos().to(dtype), angles.sin().to(dtype)
    q_ref, k_ref = ref.rotary(before[:, 0].double(), before[:, 1].double(), cos.double(), sin.double())
    ops.rotary_(q, k, cos, sin)
    assert rel_err(qkv[:, 0], q_ref) <= TOL[dtype] and rel_err(qkv[:, 1], k_ref) <= TOL[dtype]
    assert torch.equal(qkv[:, 2], before[:, 2])


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size", [16, 32])
def test_store_kv_writes_exactly_the_mapped_slots(ops, ref, dtype, block_size):
    pool, _, _, _ = paged_pool([100, 40], block_size, dtype)
    num_slots = pool.shape[0] * block_size
    tokens = 50
    slots = torch.randperm(num_slots, device=DEV)[:tokens]
    slots[::7] = -1  # padding tokens are skipped
    k = torch.randn(tokens, KV_HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    v = torch.randn_like(k)
    ours, theirs = pool.clone(), pool.clone()
    ops.store_kv(k, v, ours[:, 2, 0], ours[:, 2, 1], slots)
    ref.store_kv(k, v, theirs[:, 2, 0], theirs[:, 2, 1], slots)
    assert torch.equal(ours, theirs)
    assert not torch.equal(ours, pool)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size", [16, 32])
def test_prefill_attention_fresh_and_chunked(ops, ref, dtype, block_size):
    # fresh layout prompt, fresh crop, a 64-token chunk after a cached prefix, one token
    lens_k = [1389, 37, 200, 16]
    lens_q = [1389, 37, 64, 1]
    pool, k_cache, v_cache, table = paged_pool(lens_k, block_size, dtype)
    cu = torch.tensor([0] + [sum(lens_q[:i + 1]) for i in range(len(lens_q))], dtype=torch.int32, device=DEV)
    seq_lens = torch.tensor(lens_k, dtype=torch.int32, device=DEV)
    q = torch.randn(sum(lens_q), HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    scale = HEAD_DIM ** -0.5
    poison()
    out = ops.prefill_attention(q, k_cache, v_cache, cu, seq_lens, table, scale, max(lens_q), max(lens_k))
    expected = ref.prefill_attention(q.double(), k_cache.double(), v_cache.double(), cu, seq_lens, table,
                                     scale, max(lens_q), max(lens_k))
    assert rel_err(out, expected) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
def test_prefill_attention_tiled_with_padding_rows(ops, ref, dtype):
    """The graph-shaped launch: grid from a tile list with spare slots, padding rows after the batch."""
    from inference.ops.tiles import flash_tiles, tile_slots
    lens_k, lens_q, pad = [1389, 37, 200, 16], [1389, 37, 64, 1], 83
    pool, k_cache, v_cache, table = paged_pool(lens_k, 16, dtype)
    cu = torch.tensor([0] + [sum(lens_q[:i + 1]) for i in range(len(lens_q))], dtype=torch.int32, device=DEV)
    seq_lens = torch.tensor(lens_k, dtype=torch.int32, device=DEV)
    q = torch.randn(sum(lens_q) + pad, HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    block_m = ops.prefill_tiles_block(dtype)
    tiles = torch.tensor(flash_tiles(lens_q, block_m, tile_slots(q.shape[0], block_m, 8)), dtype=torch.int32,
                         device=DEV)
    scale = HEAD_DIM ** -0.5
    poison()
    out = ops.prefill_attention(q, k_cache, v_cache, cu, seq_lens, table, scale, 0, 0, tiles=tiles)
    expected = ref.prefill_attention(q.double(), k_cache.double(), v_cache.double(), cu, seq_lens, table,
                                     scale, max(lens_q), max(lens_k))
    real = sum(lens_q)
    assert rel_err(out[:real], expected[:real]) <= TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16])
def test_vision_attention_uniform_cudnn(dtype, ref):
    """The equal-length path (layout pages) that vision_attention may pick."""
    from inference.ops.cuda.vision_attention import uniform_cudnn
    lens = [784, 784, 784]
    cu = torch.tensor([0, 784, 1568, 2352], dtype=torch.int32, device=DEV)
    q, k, v = (torch.randn(sum(lens), 16, 80, dtype=dtype, device=DEV) for _ in range(3))
    poison()
    try:
        out = uniform_cudnn(q, k, v, len(lens), 80 ** -0.5)
    except RuntimeError as e:
        pytest.skip(f"no cuDNN attention here ({e}); vision_attention then keeps varlen")
    expected = ref.vision_attention(q.double(), k.double(), v.double(), cu, max(lens), 80 ** -0.5)
    assert rel_err(out, expected) <= TOL[dtype]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("block_size", [16, 32])
@pytest.mark.parametrize("target_programs", [None, 1, 4096])  # default, one span each, many spans
def test_decode_attention(ops, ref, dtype, block_size, target_programs):
    from inference.ops.cuda.decode_attention import decode_attention
    lens = [1, 15, 16, 17, 300, 1700]
    pool, k_cache, v_cache, table = paged_pool(lens, block_size, dtype)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEV)
    q = torch.randn(len(lens), HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    poison()
    out = decode_attention(q, k_cache, v_cache, table, seq_lens, 0.125, target_programs=target_programs)
    expected = ref.decode_attention(q.double(), k_cache.double(), v_cache.double(), table, seq_lens, 0.125)
    assert rel_err(out, expected) <= TOL[dtype]


def test_decode_attention_empty_slot_gives_zeros(ops):
    _, k_cache, v_cache, table = paged_pool([40, 40], 16, torch.bfloat16)
    seq_lens = torch.tensor([40, 0], dtype=torch.int32, device=DEV)  # a padded batch slot
    q = torch.randn(2, HEADS, HEAD_DIM, dtype=torch.bfloat16, device=DEV)
    out = ops.decode_attention(q, k_cache, v_cache, table, seq_lens, 0.125)
    assert torch.equal(out[1], torch.zeros_like(out[1])) and torch.isfinite(out[0]).all()


def test_decode_step_replays_in_a_cuda_graph(ops, ref):
    """store_kv + decode_attention captured once, replayed on new contents."""
    dtype, lens = torch.bfloat16, [700, 33, 1200]
    pool, k_cache, v_cache, table = paged_pool(lens, 16, dtype)
    seq_lens = torch.tensor(lens, dtype=torch.int32, device=DEV)
    q = torch.randn(3, HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    k_new = torch.randn(3, KV_HEADS, HEAD_DIM, dtype=dtype, device=DEV)
    v_new = torch.randn_like(k_new)
    slots = torch.zeros(3, dtype=torch.int64, device=DEV)

    def step():
        ops.store_kv(k_new, v_new, k_cache, v_cache, slots)
        return ops.decode_attention(q, k_cache, v_cache, table, seq_lens, 0.125)

    step()  # compiles the kernels outside the capture
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = step()
    for trial in range(2):  # new lengths, tokens and slots each replay
        seq_lens.copy_(torch.tensor([700 - trial * 100, 33 + trial, 1200 - trial * 17], device=DEV))
        slots.copy_((table[torch.arange(3, device=DEV), (seq_lens - 1) // 16].long() * 16 + (seq_lens - 1) % 16))
        q.normal_(), k_new.normal_(), v_new.normal_()
        graph.replay()
        torch.cuda.synchronize()
        expected = ref.decode_attention(q.double(), k_cache.double(), v_cache.double(), table, seq_lens, 0.125)
        assert rel_err(out, expected) <= TOL[dtype]
        assert torch.equal(k_cache[slots // 16, slots % 16], k_new)


@pytest.mark.parametrize("dtype,use_varlen", [(torch.bfloat16, True), (torch.bfloat16, False), (torch.float32, False)])
def test_vision_attention(dtype, use_varlen, ref):
    from inference.ops.cuda.vision_attention import varlen_available, vision_attention
    lens = [64, 200, 64, 5, 300]  # two images of one size share an SDPA call
    cu = torch.tensor([0] + [sum(lens[:i + 1]) for i in range(len(lens))], dtype=torch.int32, device=DEV)
    q, k, v = (torch.randn(sum(lens), 16, 80, dtype=dtype, device=DEV) for _ in range(3))
    scale = 80 ** -0.5
    if use_varlen and not varlen_available(q):
        pytest.skip("this torch has no varlen_attn with a scale argument")
    poison()
    out = vision_attention(q, k, v, cu, max(lens), scale, use_varlen=use_varlen)
    expected = ref.vision_attention(q.double(), k.double(), v.double(), cu, max(lens), scale)
    assert rel_err(out, expected) <= TOL[dtype]
