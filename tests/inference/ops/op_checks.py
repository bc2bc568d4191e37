"""Checks the CUDA-backend op tests share: NaN left in the caching allocator's free blocks (so an
output element a kernel never wrote shows up) and the relative error against a reference."""
import torch

DEV = "cuda"


def poison(num_bytes: int = 1 << 26) -> None:
    """Leave NaN in the allocator's cached blocks, where new outputs land: a large block of at least
    num_bytes (the size of the output about to be made) and its small-block (<= 1 MiB) pool."""
    torch.empty(num_bytes // 4 + (1 << 20), device=DEV).fill_(float("nan"))
    for _ in range(16):
        torch.empty(1 << 18, device=DEV).fill_(float("nan"))


def rel_err(out: torch.Tensor, expected: torch.Tensor) -> float:
    """‖out − expected‖ / ‖expected‖ in float64; fails on any NaN in out (an element left unwritten?)."""
    assert not torch.isnan(out).any(), "output holds NaN (an element left unwritten?)"
    return ((out.double() - expected.double()).norm() / expected.double().norm()).item()
