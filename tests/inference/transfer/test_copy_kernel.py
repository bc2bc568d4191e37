"""cuda-ipc's one-launch copy of a chunk's runs (copy_kernel.py) against plain slicing.

Without a GPU the kernel runs under Triton's interpreter (TRITON_INTERPRET=1 must be set before
triton is imported: those cases run in a subprocess, this file executed as a script); with one, on
the device too (marked gpu)."""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

ROOT = Path(__file__).resolve().parents[3]
# (src offset, dst offset, bytes): one word pair, a run longer than a program's tile (64 KiB) and not a
# multiple of it, one starting past the first tile of its pool, a zero-length entry (skipped)
COPIES = [(0, 4096, 16), (16, 200_000, 3 * 65536 + 4096 + 48), (300_000 - 48, 16, 4096), (64, 64, 0)]


def run_case(device: str) -> None:
    from inference.transfer import copy_kernel

    g = torch.Generator().manual_seed(3)
    src = torch.randint(0, 256, (400_000,), dtype=torch.uint8, generator=g).to(device)
    dst = torch.full((500_000,), 7, dtype=torch.uint8, device=device)
    assert copy_kernel.usable(src, dst, COPIES)
    want = dst.clone()
    for s, d, n in COPIES:
        want[d:d + n] = src[s:s + n]
    copy_kernel.copy_runs(src, dst, COPIES)
    if device != "cpu":
        torch.cuda.synchronize()
    assert torch.equal(dst, want)
    copy_kernel.copy_runs(src, dst, [(0, 0, 0)])  # nothing to copy: no launch, nothing touched
    assert torch.equal(dst, want)


def test_usable_needs_16_byte_alignment_everywhere():
    from inference.transfer import copy_kernel

    src, dst = torch.zeros(1024, dtype=torch.uint8), torch.zeros(1024, dtype=torch.uint8)
    assert copy_kernel.usable(src, dst, [(0, 16, 32)])
    for bad in [(8, 16, 32), (0, 24, 32), (0, 16, 40)]:
        assert not copy_kernel.usable(src, dst, [(0, 0, 16), bad])
    assert not copy_kernel.usable(src[8:], dst, [(0, 16, 32)])  # a base pointer off by 8


def test_copy_runs_in_the_interpreter():
    env = {**os.environ, "TRITON_INTERPRET": "1", "PYTHONPATH": str(ROOT)}
    res = subprocess.run([sys.executable, __file__], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stdout[-2000:] + res.stderr[-4000:]
    assert "copy_runs ok" in res.stdout


@pytest.mark.gpu
def test_copy_runs_on_the_gpu():
    if not torch.cuda.is_available():
        pytest.skip("needs a CUDA device")
    run_case("cuda")


if __name__ == "__main__":
    run_case("cpu")
    print("copy_runs ok")
