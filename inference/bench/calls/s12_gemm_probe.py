"""Session 12 probe: a Triton GEMM with the bias and quick_gelu in its epilogue (TMA loads, optionally
persistent), against cuBLAS F.linear + our quick_gelu pass, on the vision MLP's fc1 at 5 and 11 layout
pages (and the qkv shape, bias only). Correctness against the unfused pair, a sweep of tile configs, a
table; JSON to argv[1].
"""
import itertools
import json
import sys

import torch
import torch.nn.functional as F
import triton
import triton.language as tl
from triton.testing import do_bench
from triton.tools.tensor_descriptor import TensorDescriptor

from inference.ops.cuda.activation import quick_gelu


@triton.jit
def _gemm_kernel(a_desc, w_desc, c_desc, bias_ptr, M, N, K,
                 BM: tl.constexpr, BN: tl.constexpr, BK: tl.constexpr, GROUP_M: tl.constexpr,
                 ACT: tl.constexpr, NUM_PROGS: tl.constexpr, SPLIT_STORE: tl.constexpr):
    num_m = tl.cdiv(M, BM)
    num_n = tl.cdiv(N, BN)
    k_tiles = tl.cdiv(K, BK)
    num_tiles = num_m * num_n
    per_group = GROUP_M * num_n
    for tile in tl.range(tl.program_id(0), num_tiles, NUM_PROGS, flatten=True):
        group = tile // per_group
        first_m = group * GROUP_M
        size_m = min(num_m - first_m, GROUP_M)
        pid_m = first_m + (tile % per_group) % size_m
        pid_n = (tile % per_group) // size_m
        acc = tl.zeros((BM, BN), dtype=tl.float32)
        for kk in range(k_tiles):
            a = a_desc.load([pid_m * BM, kk * BK])
            w = w_desc.load([pid_n * BN, kk * BK])
            acc = tl.dot(a, w.T, acc)
        offs_n = pid_n * BN + tl.arange(0, BN)
        acc += tl.load(bias_ptr + offs_n, mask=offs_n < N, other=0.0).to(tl.float32)[None, :]
        if ACT == 1:
            acc = acc / (1.0 + tl.exp2(-1.702 * 1.4426950408889634 * acc))
        if SPLIT_STORE:
            acc = tl.reshape(acc, (BM, 2, BN // 2))
            acc = tl.permute(acc, (0, 2, 1))
            c0, c1 = tl.split(acc)
            c_desc.store([pid_m * BM, pid_n * BN], c0.to(c_desc.dtype))
            c_desc.store([pid_m * BM, pid_n * BN + BN // 2], c1.to(c_desc.dtype))
        else:
            c_desc.store([pid_m * BM, pid_n * BN], acc.to(c_desc.dtype))


def linear_act(x, w, b, act, cfg, sms):
    bm, bn, bk, stages, warps, persistent, split = cfg
    m, k = x.shape
    n = w.shape[0]
    out = torch.empty(m, n, dtype=x.dtype, device=x.device)
    a_desc = TensorDescriptor(x, [m, k], [k, 1], [bm, bk])
    w_desc = TensorDescriptor(w, [n, k], [k, 1], [bn, bk])
    c_desc = TensorDescriptor(out, [m, n], [n, 1], [bm, bn // 2 if split else bn])
    tiles = triton.cdiv(m, bm) * triton.cdiv(n, bn)
    progs = min(sms, tiles) if persistent else tiles
    _gemm_kernel[(progs,)](a_desc, w_desc, c_desc, b, m, n, k, BM=bm, BN=bn, BK=bk, GROUP_M=8, ACT=act,
                           NUM_PROGS=progs, SPLIT_STORE=split, num_stages=stages, num_warps=warps)
    return out


def main():
    torch.manual_seed(0)
    dev, dt = "cuda", torch.bfloat16
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    rows = []
    configs = [c for c in itertools.product([128], [128, 256], [64], [3, 4], [8], [False, True], [False, True])
               if not (c[1] == 128 and c[6])]
    for pages, (name, n, act) in itertools.product((5, 11), (("fc1", 5120, 1), ("qkv", 3840, 0))):
        m = 5476 * pages
        x = torch.randn(m, 1280, device=dev, dtype=dt)
        w = torch.randn(n, 1280, device=dev, dtype=dt) / 36
        b = torch.randn(n, device=dev, dtype=dt)
        flop = 2 * m * 1280 * n
        ref_fn = (lambda: quick_gelu(F.linear(x, w, b))) if act else (lambda: F.linear(x, w, b))
        ref = ref_fn().float()
        base = do_bench(ref_fn, warmup=50, rep=300)
        lin = do_bench(lambda: F.linear(x, w, b), warmup=50, rep=300)
        print(f"p{pages} {name}: cuBLAS{' + quick_gelu' if act else ''} {base:.3f} ms "
              f"({flop / base / 1e9:.0f} TFLOP/s), linear alone {lin:.3f} ms", flush=True)
        rows.append({"pages": pages, "op": name, "impl": "cublas", "ms": base, "linear_ms": lin})
        for cfg in configs:
            try:
                got = linear_act(x, w, b, act, cfg, sms).float()
                err = ((got - ref).norm() / ref.norm()).item()
                ms = do_bench(lambda: linear_act(x, w, b, act, cfg, sms), warmup=50, rep=300)
            except Exception as exc:  # a config that does not compile or fit: report it
                print(f"  {cfg}: {type(exc).__name__}: {str(exc)[:160]}")
                continue
            rows.append({"pages": pages, "op": name, "impl": "triton", "cfg": cfg, "ms": ms, "rel_err": err})
            print(f"  {str(cfg):42s} {ms:.3f} ms {flop / ms / 1e9:5.0f} TFLOP/s  {base / ms:5.2f}x  err {err:.1e}",
                  flush=True)
    json.dump({"device": torch.cuda.get_device_name(), "torch": torch.__version__, "triton": triton.__version__,
               "cfg_fields": "BM, BN, BK, stages, warps, persistent, split_store", "rows": rows},
              open(sys.argv[1], "w"), indent=1)


if __name__ == "__main__":
    main()
