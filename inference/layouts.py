"""Deployment layouts: one typed schema for `layouts/*.toml`.

A layout says which roles run where: `embedded` (one in-process engine) or
disaggregated (prefill and decode workers, possibly on different kinds of
device, with a router in front), their dtypes, op backends, KV block sizes,
the KV transport (with a fallback), SLOs, the shared auth token, and how
roles on one GPU share it (`[gpu_sharing] mode = "mps"` with a per-worker
`sm_percent`: see inference/disagg/mps.py). The CLI
(`docpipe serve`, `docpipe convert --layout`), `inference.LLM(layout=...)`
and the Ray job all read layouts through `load_layout`.
"""
from __future__ import annotations

import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path

LAYOUT_DIR = Path(__file__).resolve().parent.parent / "layouts"
ROLES = ("embedded", "prefill", "decode")
DTYPES = ("float32", "bfloat16", "float16")
TRANSPORTS = ("shm", "tcp", "cuda-ipc", "rdma", "fake")
GPU_SHARING = ("none", "mps")
MPS_PRIORITIES = {"normal": 0, "below_normal": 1}  # CUDA_MPS_CLIENT_PRIORITY values


@dataclass
class WorkerSpec:
    role: str  # embedded | prefill | decode
    device: str = "cpu"  # torch device string: cpu, cuda, cuda:1
    dtype: str = "bfloat16"  # weights, activations and KV cache
    ops_backend: str | None = None  # None: chosen from the device (inference.ops.get_ops)
    kv_block_size: int = 16  # tokens per KV block
    mode: str = "graph"  # graph: CUDA-graph decode steps where supported; eager
    count: int = 1  # identical workers of this spec
    hosts: list[str] = field(default_factory=lambda: ["127.0.0.1"])  # where they run; listeners bind here
    port: int = 0  # first control port; 0 = pick a free one
    max_num_seqs: int = 256  # concurrent sequences per worker
    max_num_batched_tokens: int = 8192  # token budget of one step
    gpu_memory_fraction: float = 0.85  # share of free device memory for weights + KV (GPU only)
    sm_percent: int | None = None  # with [gpu_sharing] mode = "mps": share of the GPU's SMs this role may use
    # with [gpu_sharing] mode = "mps": "normal" or "below_normal" scheduling priority of this role's
    # kernels against the other clients' (CUDA_MPS_CLIENT_PRIORITY); None: the driver's default
    mps_priority: str | None = None

    def __post_init__(self) -> None:
        if self.role not in ROLES:
            raise ValueError(f"role must be one of {ROLES}, got {self.role!r}")
        if self.dtype not in DTYPES:
            raise ValueError(f"{self.role}: dtype must be one of {DTYPES}, got {self.dtype!r}")
        if self.mode not in ("graph", "eager"):
            raise ValueError(f"{self.role}: mode must be graph or eager")
        if self.kv_block_size <= 0 or self.kv_block_size & (self.kv_block_size - 1):
            raise ValueError(f"{self.role}: kv_block_size must be a power of two")
        if self.count < 1 or not self.hosts:
            raise ValueError(f"{self.role}: count >= 1 and at least one host required")
        if self.sm_percent is not None and (type(self.sm_percent) is not int or not 1 <= self.sm_percent <= 100):
            raise ValueError(f"{self.role}: sm_percent must be an int in [1, 100], got {self.sm_percent!r}")
        if self.mps_priority is not None and self.mps_priority not in MPS_PRIORITIES:
            raise ValueError(f"{self.role}: mps_priority must be one of {sorted(MPS_PRIORITIES)}, "
                             f"got {self.mps_priority!r}")


@dataclass
class GpuSharingSpec:
    """How processes of one layout share a GPU when docpipe spawns them."""

    mode: str = "none"  # none: the driver time-slices them; mps: one MPS control daemon for the session
    startup_timeout_s: float = 10.0  # how long the daemon may take to open its control pipe

    def __post_init__(self) -> None:
        if self.mode not in GPU_SHARING:
            raise ValueError(f"gpu_sharing.mode must be one of {GPU_SHARING}, got {self.mode!r}")
        if self.startup_timeout_s <= 0:
            raise ValueError("gpu_sharing.startup_timeout_s must be > 0")


@dataclass
class TransferSpec:
    transport: str = "shm"  # shm | tcp | cuda-ipc | rdma
    fallback: str | None = None  # used when `transport` is unavailable on this machine
    max_inflight: int = 32  # unacked transfers per peer (a group of queued cuda-ipc sends takes what fits)
    lease_s: float = 30.0  # prefill frees unacknowledged blocks after this
    tcp_streams: int | None = None  # tcp: connections per sender (None: $DOCPIPE_TCP_STREAMS or 1)

    def __post_init__(self) -> None:
        for name in (self.transport, self.fallback):
            if name is not None and name not in TRANSPORTS:
                raise ValueError(f"unknown transport {name!r}; known: {TRANSPORTS}")
        if self.tcp_streams is not None and (type(self.tcp_streams) is not int or not 1 <= self.tcp_streams <= 64):
            raise ValueError(f"transfer.tcp_streams must be an int in [1, 64], got {self.tcp_streams!r}")
        if isinstance(self.lease_s, bool) or not isinstance(self.lease_s, (int, float)) or not 0 < self.lease_s < math.inf:
            raise ValueError(f"transfer.lease_s must be a finite number of seconds > 0, got {self.lease_s!r}")
        if type(self.max_inflight) is not int or self.max_inflight < 1:
            raise ValueError(f"transfer.max_inflight must be an int >= 1, got {self.max_inflight!r}")


@dataclass
class SloSpec:
    ttft_ms: float = 5000.0  # time to first token target, p99
    tpot_ms: float = 100.0  # time per output token target, p99
    max_queue: int = 4096  # requests the router holds before it rejects


@dataclass
class Layout:
    name: str
    workers: list[WorkerSpec]  # embedded, or at least one prefill and one decode
    transfer: TransferSpec = field(default_factory=TransferSpec)
    slo: SloSpec = field(default_factory=SloSpec)
    gpu_sharing: GpuSharingSpec = field(default_factory=GpuSharingSpec)
    router_host: str = "127.0.0.1"  # router listener address
    router_port: int = 0  # 0 = pick a free one
    token_env: str = "DOCPIPE_TOKEN"  # environment variable holding the shared token
    token: str | None = None  # literal token (prefer token_env outside tests)
    description: str = ""

    def __post_init__(self) -> None:
        for mps_only in ("sm_percent", "mps_priority"):
            set_by = [w.role for w in self.workers if getattr(w, mps_only) is not None]
            if set_by and self.gpu_sharing.mode != "mps":
                raise ValueError(f"layout {self.name}: {mps_only} of {set_by} needs [gpu_sharing] mode = \"mps\"")
        roles = {w.role for w in self.workers}
        if roles == {"embedded"}:
            return
        if roles != {"prefill", "decode"}:
            raise ValueError(f"layout {self.name}: needs one embedded worker, or prefill and decode workers; got {sorted(roles)}")

    @property
    def is_disaggregated(self) -> bool:
        return self.workers[0].role != "embedded"

    def role(self, name: str) -> WorkerSpec:
        for w in self.workers:
            if w.role == name:
                return w
        raise KeyError(f"layout {self.name} has no {name} worker")

    def auth_token(self) -> str | None:
        return self.token or os.environ.get(self.token_env) or None


def _build(cls, data: dict, where: str):
    known = {f.name for f in fields(cls)}
    unknown = set(data) - known
    if unknown:
        raise ValueError(f"{where}: unknown keys {sorted(unknown)}; known: {sorted(known)}")
    return cls(**data)


def parse_layout(data: dict, name: str = "layout") -> Layout:
    data = dict(data)
    workers = [_build(WorkerSpec, w, f"{name}: worker") for w in data.pop("workers", [])]
    transfer = _build(TransferSpec, data.pop("transfer", {}), f"{name}: transfer")
    slo = _build(SloSpec, data.pop("slo", {}), f"{name}: slo")
    sharing = _build(GpuSharingSpec, data.pop("gpu_sharing", {}), f"{name}: gpu_sharing")
    data.setdefault("name", name)
    return _build(Layout, {**data, "workers": workers, "transfer": transfer, "slo": slo, "gpu_sharing": sharing}, name)


def load_layout(path_or_name: str | os.PathLike) -> Layout:
    """Load a layout file, or a shipped layout by name (`local-cpu-1p1d`)."""
    path = Path(path_or_name)
    if not path.exists():
        path = LAYOUT_DIR / f"{path_or_name}.toml"
    if not path.exists():
        shipped = sorted(p.stem for p in LAYOUT_DIR.glob("*.toml"))
        raise FileNotFoundError(f"layout {str(path_or_name)!r} not found; shipped layouts: {shipped}")
    with open(path, "rb") as f:
        try:
            data = tomllib.load(f)
        except tomllib.TOMLDecodeError as e:
            raise ValueError(f"{path}: {e}") from e
    return parse_layout(data, name=path.stem)
