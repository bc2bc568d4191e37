"""Host -> device copies that never stall the host.

A CUDA copy from pageable host memory first synchronises its stream: the
host blocks until every kernel queued before it has run. Inside the engine's
step loop that undoes the overlap of host work with the launched step (and
in the document pipeline, every request's image upload waited for the GPU to
drain). Staging through pinned memory (torch's caching host allocator keeps
the buffer alive until the copy ran) makes the copy truly asynchronous.
"""
from __future__ import annotations

import torch


def to_device(data, device: torch.device, dtype: torch.dtype | None = None) -> torch.Tensor:
    """`data` (tensor, numpy array or list) on `device`, without a host sync on CUDA."""
    t = data if isinstance(data, torch.Tensor) else torch.as_tensor(data, dtype=dtype)
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if device.type != "cuda" or t.device.type == "cuda":
        return t.to(device)
    return t.pin_memory().to(device, non_blocking=True)
