"""Forward flash attention for the vision encoder (Triton, tuned for sm_90).

Contract: q, k, v are [T, H, D] (any token and head strides, last dim
contiguous, e.g. views of a packed qkv [T, 3, H, D]); cu_seqlens is int32
[B+1] with image b owning tokens cu_seqlens[b]:cu_seqlens[b+1]; every query
attends to every key of its own image (bidirectional, no mask); the result is
a new contiguous [T, H, D] in q's dtype. max_seqlen comes from the caller, so
the launch needs no host sync and may be graph-captured.

Head dims that are not a power of two (80 in Qwen2-VL / MinerU2.5) are split
into a power-of-two part and an optional smaller power-of-two part (80 =
64 + 16, 96 = 64 + 32): Q K^T is two dots summed and P V goes into two
accumulators, so no FLOP is spent on padding (padding 80 to 128 wastes 37%).

Grid: (query tiles of max_seqlen, B * H), the tile index fastest so that the
CTAs running together share one (image, head) and its K/V stay in L2. Tiles
past an image's length exit at once. Or, given `tiles` (an int32 list of
image << 16 | query tile, -1 = none; see flash_tiles), grid (len(tiles), H):
the grid then depends on the list's length alone, not on the images, which
is what a CUDA graph replayed for many batches of images needs; tokens no
tile covers (a graph's padding rows) are left unwritten. Softmax runs in base 2 with the scale
folded into one multiply-add; only the last, partial KV tile is masked.

Exponentials: each loop step waits for its Q K^T before its softmax, so the
tensor cores idle while the special-function unit (16 exp2 a clock per SM)
works through the tile; at D=80 that is ~80 % of the matrix time. Moving half
of each tile's exp2 to the FMA pipe as a cubic was measured slower on the H200
(278 vs 418 TFLOP/s at 16 pages, session 8) and removed. `lazy_rescale`
(off by default) drops the per-tile multiply of the [BLOCK_M, D]
accumulators (1.25 multiplies per score at D=80) on tiles that do not raise
a row's max by more than 2^8: measured no faster in the layout pass (34.38 =
34.38 pages/s, session 9). `exp_bf16` (bf16 inputs only; off by default,
unmeasured on a GPU as of session 9) rounds the exponent to bf16 and
exponentiates pairs with ex2.approx.ftz.bf16x2 (-inf, a masked key, gives 0),
one special-function op for two scores: P is rounded to bf16 for P V anyway,
and near a row's max (the large P that dominate) the bf16 exponent is off by
at most 2^-9, 0.14 % of P; with lazy_rescale the largest P's exponent runs
up to 8 (P <= 2^8), where it is off by up to 2^-6, 1.1 % of P.
Not in the Triton interpreter (inline PTX).
"""
from __future__ import annotations

import torch
import triton
import triton.language as tl

from inference.ops.cuda.flash_config import FlashConfig
from inference.ops.tiles import flash_tiles  # noqa: F401 - the tile list this kernel reads

_LOG2E = 1.4426950408889634
RESCALE_LOG2 = tl.constexpr(8.0)  # lazy_rescale: P <= 2^8 between rescales (bf16 keeps its relative precision)


DEFAULT_CONFIG = FlashConfig()


def split_head_dim(head_dim: int) -> tuple[int, int]:
    """head_dim -> (D0, D1): D0 the largest power of two <= head_dim, D1 the
    rest (0, or a smaller power of two >= 16). Raises for other head dims."""
    if head_dim < 16:
        raise ValueError(f"vision_flash: head dim {head_dim} < 16 is not supported")
    d0 = 1 << (head_dim.bit_length() - 1)
    d1 = head_dim - d0
    if d1 != 0 and (d1 < 16 or d1 & (d1 - 1)):
        raise ValueError(f"vision_flash: head dim {head_dim} is not a power of two >= 16 "
                         f"plus an optional smaller power of two >= 16")
    return d0, d1


@triton.jit
def _load_tile(src, start, row0, col, seq_len, stride_t, BLOCK: tl.constexpr, WIDTH: tl.constexpr,
               MASKED: tl.constexpr, TMA: tl.constexpr):
    """Rows row0..row0+BLOCK of an image starting at token `start`, elements col..col+WIDTH
    of each. TMA: `src` is a [T, H*D] descriptor; rows past the image read the next
    image (or zeros past T); MASKED zeroes them, as the loads without TMA do: a masked
    score gives p = 0, but 0 * NaN is NaN, and rows after the last image may be a
    graph's padding, which holds anything."""
    if TMA:
        tile = src.load([(start + row0).to(tl.int32), col])
        if MASKED:
            rows = row0 + tl.arange(0, BLOCK)
            tile = tl.where((rows < seq_len)[:, None], tile, 0.0)
    else:
        rows = row0 + tl.arange(0, BLOCK)
        ptrs = src + start * stride_t + col + rows[:, None] * stride_t + tl.arange(0, WIDTH)[None, :]
        if MASKED:
            tile = tl.load(ptrs, mask=(rows < seq_len)[:, None], other=0.0)
        else:
            tile = tl.load(ptrs)
    return tile


@triton.jit
def _probs(x, dtype, EXPB16: tl.constexpr):
    """P = exp2(x) as the P V operand (in `dtype`) and its row sums in fp32. EXPB16: x rounded to
    bf16 and exponentiated two at a time (ex2.approx.ftz.bf16x2, sm_90), so the special-function
    unit does half the work; P is bf16 for the dot either way, and the row sums add the very
    values the dot uses."""
    if EXPB16:
        p = tl.inline_asm_elementwise("ex2.approx.ftz.bf16x2 $0, $1;", "=r,r", [x.to(tl.bfloat16)],
                                      dtype=tl.bfloat16, is_pure=True, pack=2)
        return p, tl.sum(p.to(tl.float32), 1)
    p = tl.math.exp2(x)
    return p.to(dtype), tl.sum(p, 1)


@triton.jit
def _kv_step(q0, q1, k0_src, k1_src, v0_src, v1_src, start, n_start, seq_len, k_col, v_col, skt, svt,
             m_i, l_i, acc0, acc1, scale_log2, D0: tl.constexpr, D1: tl.constexpr, BLOCK_N: tl.constexpr,
             MASKED: tl.constexpr, PRECISION: tl.constexpr, TMA: tl.constexpr, LAZY: tl.constexpr,
             EXPB16: tl.constexpr):
    """One KV tile of the online softmax; MASKED only for the image's last, partial tile.
    LAZY: the reference max m_i (and with it the accumulators and l_i) moves only when some row's
    tile max exceeds it by more than RESCALE_LOG2 (P then stays <= 2^RESCALE_LOG2, exact after the
    final division); otherwise the tile skips the rescale of its [BLOCK_M, D] accumulators."""
    k0 = _load_tile(k0_src, start, n_start, k_col, seq_len, skt, BLOCK_N, D0, MASKED, TMA)
    v0 = _load_tile(v0_src, start, n_start, v_col, seq_len, svt, BLOCK_N, D0, MASKED, TMA)
    s = tl.dot(q0, tl.trans(k0), input_precision=PRECISION)
    if D1 > 0:
        k1 = _load_tile(k1_src, start, n_start, k_col + D0, seq_len, skt, BLOCK_N, D1, MASKED, TMA)
        v1 = _load_tile(v1_src, start, n_start, v_col + D0, seq_len, svt, BLOCK_N, D1, MASKED, TMA)
        s = tl.dot(q1, tl.trans(k1), s, input_precision=PRECISION)
    if MASKED:
        s = tl.where((n_start + tl.arange(0, BLOCK_N) < seq_len)[None, :], s, float("-inf"))
    # running max kept in scaled base-2 units; the tile holds >= 1 real key, so it is finite
    m_tile = tl.max(s, 1) * scale_log2
    if LAZY:
        if tl.max(m_tile - m_i, 0) > RESCALE_LOG2:  # one decision for the tile (m_i = -inf at first)
            m_new = tl.maximum(m_i, m_tile)
            alpha = tl.math.exp2(m_i - m_new)
            l_i = l_i * alpha
            acc0 = acc0 * alpha[:, None]
            if D1 > 0:
                acc1 = acc1 * alpha[:, None]
            m_i = m_new
        p, p_sum = _probs(s * scale_log2 - m_i[:, None], v0.dtype, EXPB16)
        l_i = l_i + p_sum
        acc0 = tl.dot(p, v0, acc0, input_precision=PRECISION)
        if D1 > 0:
            acc1 = tl.dot(p, v1, acc1, input_precision=PRECISION)
        return m_i, l_i, acc0, acc1
    m_new = tl.maximum(m_i, m_tile)
    p, p_sum = _probs(s * scale_log2 - m_new[:, None], v0.dtype, EXPB16)
    alpha = tl.math.exp2(m_i - m_new)
    l_i = l_i * alpha + p_sum
    acc0 = tl.dot(p, v0, acc0 * alpha[:, None], input_precision=PRECISION)
    if D1 > 0:
        acc1 = tl.dot(p, v1, acc1 * alpha[:, None], input_precision=PRECISION)
    return m_new, l_i, acc0, acc1


@triton.jit
def _vision_flash_kernel(
        q0_src, q1_src, k0_src, k1_src, v0_src, v1_src, o_ptr, cu_ptr, tiles_ptr, scale_log2,
        sqt, sqh, skt, skh, svt, svh, sot, soh, num_heads,
        D0: tl.constexpr, D1: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
        PRECISION: tl.constexpr, TMA: tl.constexpr, TILED: tl.constexpr, LAZY: tl.constexpr,
        EXPB16: tl.constexpr):
    """*_src: q/k/v pointers (the same one for both head-dim parts), or with TMA one
    descriptor per tensor and part (a descriptor has one block shape). TILED: the
    (image, query tile) of this program comes from tiles_ptr."""
    if TILED:
        entry = tl.load(tiles_ptr + tl.program_id(0))
        if entry < 0:
            return
        b = entry >> 16
        tile_m = entry & 0xFFFF
        h = tl.program_id(1)
    else:
        tile_m = tl.program_id(0)
        bh = tl.program_id(1)
        b = bh // num_heads
        h = bh % num_heads
    start = tl.load(cu_ptr + b)
    seq_len = tl.load(cu_ptr + b + 1) - start
    if tile_m * BLOCK_M >= seq_len:
        return
    start = start.to(tl.int64)  # packed batches of many pages pass 2^31 elements
    m0 = tile_m * BLOCK_M
    q0 = _load_tile(q0_src, start, m0, h * sqh, seq_len, sqt, BLOCK_M, D0, True, TMA)
    acc0 = tl.zeros([BLOCK_M, D0], tl.float32)
    if D1 > 0:
        q1 = _load_tile(q1_src, start, m0, h * sqh + D0, seq_len, sqt, BLOCK_M, D1, True, TMA)
        acc1 = tl.zeros([BLOCK_M, D1], tl.float32)
    else:  # placeholders, never read: one kv-step body for both head-dim shapes
        q1 = q0
        acc1 = acc0
    m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
    l_i = tl.zeros([BLOCK_M], tl.float32)

    n_full = (seq_len // BLOCK_N) * BLOCK_N
    for n_start in range(0, n_full, BLOCK_N):
        m_i, l_i, acc0, acc1 = _kv_step(q0, q1, k0_src, k1_src, v0_src, v1_src, start, n_start, seq_len,
                                        h * skh, h * svh, skt, svt, m_i, l_i, acc0, acc1, scale_log2,
                                        D0, D1, BLOCK_N, False, PRECISION, TMA, LAZY, EXPB16)
    if n_full < seq_len:
        m_i, l_i, acc0, acc1 = _kv_step(q0, q1, k0_src, k1_src, v0_src, v1_src, start, n_full, seq_len,
                                        h * skh, h * svh, skt, svt, m_i, l_i, acc0, acc1, scale_log2,
                                        D0, D1, BLOCK_N, True, PRECISION, TMA, LAZY, EXPB16)

    inv_l = 1.0 / l_i
    offs_m = m0 + tl.arange(0, BLOCK_M)
    o_rows = o_ptr + start * sot + h * soh + offs_m[:, None] * sot
    keep = (offs_m < seq_len)[:, None]
    tl.store(o_rows + tl.arange(0, D0)[None, :], (acc0 * inv_l[:, None]).to(o_ptr.dtype.element_ty), mask=keep)
    if D1 > 0:
        tl.store(o_rows + D0 + tl.arange(0, D1)[None, :], (acc1 * inv_l[:, None]).to(o_ptr.dtype.element_ty),
                 mask=keep)


def tma_eligible(x: torch.Tensor) -> bool:
    """A [T, H, D] tensor is one 2-D [T, H*D] TMA view when its heads are adjacent and
    its base and token stride are 16-byte aligned (views of a packed qkv are)."""
    tokens, heads, dim = x.shape
    return ((x.stride(1) == dim or heads == 1) and x.data_ptr() % 16 == 0
            and (x.stride(0) * x.element_size()) % 16 == 0 and tokens > 0)


def _sources(x: torch.Tensor, rows: int, d0: int, d1: int, tma: bool) -> tuple:
    if not tma:
        return x, x
    from triton.tools.tensor_descriptor import TensorDescriptor

    shape, strides = [x.shape[0], x.shape[1] * x.shape[2]], [x.stride(0), 1]
    return (TensorDescriptor(x, shape, strides, [rows, d0]), TensorDescriptor(x, shape, strides, [rows, d1 or d0]))


def kernel_args(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, out: torch.Tensor, cu_seqlens: torch.Tensor,
                scale: float, config: FlashConfig, tma: bool, tiles: torch.Tensor | None = None) -> tuple:
    """The kernel's runtime arguments in order."""
    d0, d1 = split_head_dim(q.shape[2])
    return (*_sources(q, config.block_m, d0, d1, tma), *_sources(k, config.block_n, d0, d1, tma),
            *_sources(v, config.block_n, d0, d1, tma), out, cu_seqlens,
            cu_seqlens if tiles is None else tiles, scale * _LOG2E,
            q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
            out.stride(0), out.stride(1), q.shape[1])


def kernel_constexprs(head_dim: int, dtype: torch.dtype, config: FlashConfig, tma: bool, tiled: bool = False) -> dict:
    d0, d1 = split_head_dim(head_dim)
    # fp32 inputs: exact fp32 products (tf32 would miss the 1e-5 contract)
    return dict(D0=d0, D1=d1, BLOCK_M=config.block_m, BLOCK_N=config.block_n,
                PRECISION="ieee" if dtype == torch.float32 else "tf32", TMA=tma, TILED=tiled,
                LAZY=config.lazy_rescale, EXPB16=config.exp_bf16 and dtype == torch.bfloat16)


def vision_flash_attention(q: torch.Tensor, k: torch.Tensor, v: torch.Tensor, cu_seqlens: torch.Tensor,
                           max_seqlen: int, scale: float, config: FlashConfig | None = None,
                           tiles: torch.Tensor | None = None) -> torch.Tensor:
    """Bidirectional attention within each image of a packed batch (see module doc).
    tiles: int32 flash_tiles(...) of config.block_m on q's device; max_seqlen is then unused."""
    config = config or DEFAULT_CONFIG
    if not (q.shape == k.shape == v.shape and q.dim() == 3):
        raise ValueError(f"vision_flash: q, k, v must share one [T, H, D] shape, got "
                         f"{tuple(q.shape)}, {tuple(k.shape)}, {tuple(v.shape)}")
    if not (q.dtype == k.dtype == v.dtype):
        raise ValueError(f"vision_flash: q, k, v dtypes differ ({q.dtype}, {k.dtype}, {v.dtype})")
    if q.stride(-1) != 1 or k.stride(-1) != 1 or v.stride(-1) != 1:
        raise ValueError("vision_flash: the head dim of q, k and v must be contiguous")
    if cu_seqlens.dtype != torch.int32:
        cu_seqlens = cu_seqlens.to(torch.int32)
    num_tokens, num_heads, head_dim = q.shape
    out = torch.empty((num_tokens, num_heads, head_dim), dtype=q.dtype, device=q.device)
    num_images = cu_seqlens.numel() - 1
    if tiles is not None:
        if tiles.dtype != torch.int32 or tiles.dim() != 1:
            raise ValueError(f"vision_flash: tiles must be a 1-D int32 tensor, got {tiles.dtype} {tuple(tiles.shape)}")
        if num_tokens == 0 or tiles.numel() == 0:
            return out
        grid = (tiles.numel(), num_heads)
    elif num_tokens == 0 or num_images <= 0 or max_seqlen <= 0:
        return out
    else:
        grid = (triton.cdiv(max_seqlen, config.block_m), num_images * num_heads)
    tma = config.tma and all(tma_eligible(x) for x in (q, k, v))  # else plain loads, same result
    _vision_flash_kernel[grid](*kernel_args(q, k, v, out, cu_seqlens, scale, config, tma, tiles),
                               **kernel_constexprs(head_dim, q.dtype, config, tma, tiles is not None),
                               **config.launch_options())
    return out
