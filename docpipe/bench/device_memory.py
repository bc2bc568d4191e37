"""The CUDA caching allocator as a timed bench pass sees it: counters whose
growth during the pass means the host waited (`allocator_counts`, read before
and after), and the footprint after it (`memory_gib`). Both read torch's
allocator statistics only; no allocation, no sync."""
from __future__ import annotations


def allocator_counts() -> dict:
    """CUDA caching-allocator counters whose growth during a timed run means the host waited:
    a cudaMalloc retry frees cached blocks (a device sync); each cudaMalloc/cudaFree is a driver call.
    Empty without CUDA."""
    import torch
    if not torch.cuda.is_available():
        return {}
    stats = torch.cuda.memory_stats()
    return {k: int(stats.get(k, 0)) for k in ("num_alloc_retries", "num_device_alloc", "num_device_free",
                                              "num_sync_all_streams", "num_ooms")}


def memory_gib() -> dict:
    """The caching allocator's footprint after the run: the KV pool plus the graph pools' activations and
    what eager steps keep cached, against the device's total (GiB)."""
    import torch
    gib = 2 ** 30
    return {"reserved": round(torch.cuda.memory_reserved() / gib, 2),
            "peak_reserved": round(torch.cuda.max_memory_reserved() / gib, 2),
            "peak_allocated": round(torch.cuda.max_memory_allocated() / gib, 2),
            "total": round(torch.cuda.get_device_properties(0).total_memory / gib, 2)}
