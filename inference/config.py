"""EngineConfig: the one typed config of an engine instance. `LLM(...)`, the
layout files and the disaggregated workers all build this object."""
from __future__ import annotations

import os
from dataclasses import dataclass

import torch

DTYPES = {"float32": torch.float32, "fp32": torch.float32, "float16": torch.float16, "fp16": torch.float16,
          "half": torch.float16, "bfloat16": torch.bfloat16, "bf16": torch.bfloat16}


def resolve_dtype(dtype: str | torch.dtype, checkpoint_dtype: str, device: torch.device) -> torch.dtype:
    """'auto' = the checkpoint's dtype on accelerators, float32 on the CPU
    (bf16 matmuls on CPU are slow and inexact)."""
    if isinstance(dtype, torch.dtype):
        return dtype
    if dtype == "auto":
        return torch.float32 if device.type == "cpu" else DTYPES.get(checkpoint_dtype, torch.bfloat16)
    if dtype not in DTYPES:
        raise ValueError(f"unknown dtype {dtype!r}; known: {sorted(DTYPES)}")
    return DTYPES[dtype]


@dataclass
class EngineConfig:
    model: str                              # local HF directory or "dummy:<preset>"
    dtype: str | torch.dtype = "auto"       # weights, activations and KV cache
    device: str = "cpu"
    kv_block_size: int = 16                 # tokens per KV block
    max_num_seqs: int = 256                 # running requests at most
    max_num_batched_tokens: int | None = None  # tokens per step (prefill chunks + decodes); None: by device
    num_kv_blocks: int | None = None        # None: from free memory (GPU) or max_model_len * max_num_seqs (CPU)
    max_model_len: int = 16384              # prompt + output tokens per request at most
    gpu_memory_utilization: float = 0.90    # share of total device memory the engine may use
    ops_backend: str | None = None          # None: the device's backend, else by name ("reference", "cuda")
    mode: str = "graph"                     # "graph": CUDA-graph decode steps (CUDA only), "eager"
    scheduling: str | None = None           # "mixed" | "prefill_first"; None: prefill_first in graph mode
    seed: int = 0                           # dummy weights and unseeded sampling
    # prefill_first: hold new arrivals (while decodes run) until this many prompt tokens are queued
    # or the oldest waited prefill_hold_s (scheduler.py); None: 4096 in graph mode, else 0 (off)
    prefill_hold_tokens: int | None = None
    prefill_hold_s: float = 0.02
    # eager (prefill and mixed) steps run the LM on their token count rounded up to a multiple of this
    # (padding rows write no KV and are dropped): cuBLAS picks a kernel per new matrix shape, ~0.5 ms
    # of host time each on the H200's host (inference.bench.linear_host), and every prefill step had a
    # new token count. None: 256 in graph mode, else 0 (off)
    prefill_pad_tokens: int | None = None
    # schedule + launch step N+1 before step N's tokens reach the host. None: on for CUDA devices; off
    # on the CPU, where a step runs inside launch() (nothing to overlap) and async steps would only hand
    # each finished request out one step later. DOCPIPE_SYNC_STEPS=1 turns it off in every engine of a
    # run (workers included), for debugging
    async_scheduling: bool | None = None
    # LLM.generate prepares prompts (host half: image arrays, expansion, positions) on a background
    # thread while steps run; None: on for CUDA devices (on the CPU there is no device to overlap with)
    prepare_ahead: bool | None = None
    # graph mode: capture every vision-encoder and LM-prefill graph bucket at start (a capture inside
    # a step stalls the device 20-30 ms on the H200); off for decode workers, whose prefills (after
    # preemption) are rare: they capture on first use. DOCPIPE_GRAPH_PRECAPTURE=0 turns it off anywhere
    precapture_graphs: bool = True
    # graph mode: capture the decode-step graphs (rows x block-table width buckets) and the sampler's
    # step graphs at start too, with the sampler's history reserved for max_num_seqs requests; off
    # for prefill workers (they never decode). DOCPIPE_GRAPH_PRECAPTURE=0 turns it off anywhere
    precapture_decode: bool = True

    def __post_init__(self):
        if self.max_num_batched_tokens is None:
            # GPU: ~11 layout pages per step, so the vision encoder sees big batches and prefill-heavy
            # steps are few (each costs a host round trip); CPU: smaller steps keep tests quick.
            self.max_num_batched_tokens = 16384 if self.torch_device.type == "cuda" else 8192
        if self.mode not in ("graph", "eager"):
            raise ValueError(f"mode must be 'graph' or 'eager', got {self.mode!r}")
        if self.async_scheduling is None:
            self.async_scheduling = self.torch_device.type == "cuda" and os.environ.get("DOCPIPE_SYNC_STEPS") != "1"
        if self.scheduling is None:
            # Graph mode captures decode-only steps: keeping prefill out of them lets every
            # decode step replay its graph instead of running eager beside a prefill chunk.
            self.scheduling = "prefill_first" if self.use_cuda_graph else "mixed"
        if self.prefill_hold_tokens is None:
            self.prefill_hold_tokens = 4096 if self.use_cuda_graph else 0
        if self.prefill_pad_tokens is None:
            self.prefill_pad_tokens = 256 if self.use_cuda_graph else 0
        if self.prefill_pad_tokens < 0:
            raise ValueError("prefill_pad_tokens must be >= 0")
        if self.prefill_hold_tokens < 0 or self.prefill_hold_s < 0:
            raise ValueError("prefill_hold_tokens and prefill_hold_s must be >= 0")
        if self.scheduling not in ("mixed", "prefill_first"):
            raise ValueError(f"scheduling must be 'mixed' or 'prefill_first', got {self.scheduling!r}")
        if self.kv_block_size < 1 or self.max_num_seqs < 1:
            raise ValueError("kv_block_size and max_num_seqs must be >= 1")
        if self.max_num_batched_tokens < 1:
            raise ValueError("max_num_batched_tokens must be >= 1")
        if self.num_kv_blocks is not None and self.num_kv_blocks < 1:
            raise ValueError(f"num_kv_blocks must be >= 1, got {self.num_kv_blocks}")
        if not 0 < self.gpu_memory_utilization <= 1:
            raise ValueError("gpu_memory_utilization must be in (0, 1]")

    @property
    def torch_device(self) -> torch.device:
        return torch.device(self.device)

    @property
    def use_cuda_graph(self) -> bool:
        return self.mode == "graph" and self.torch_device.type == "cuda"
