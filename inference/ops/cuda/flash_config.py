"""Launch configurations of the vision flash kernel (vision_flash.py), with the names the attention
sweep, the graph-config override (DOCPIPE_VISION_GRAPH_CONFIG) and the results use:
m{block_m}n{block_n}w{warps}s{stages}[tma][lz][xb][r{maxnreg}]."""
from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class FlashConfig:
    """One launch configuration (tile sizes in tokens)."""
    block_m: int = 128
    block_n: int = 64
    num_warps: int = 8
    num_stages: int = 3
    tma: bool = False  # K/V/Q tiles through TMA descriptors (Hopper+) when the layout allows
    maxnreg: int | None = None  # register cap a thread (ptxas spills above it), None: the compiler's choice
    lazy_rescale: bool = False  # rescale the accumulators only when a row's max rose by > 2^8 (vision_flash.RESCALE_LOG2)
    exp_bf16: bool = False  # bf16 inputs: P = exp2 in packed bf16 pairs (two values an SFU op; see vision_flash.py)

    @property
    def name(self) -> str:
        return (f"m{self.block_m}n{self.block_n}w{self.num_warps}s{self.num_stages}" + ("tma" if self.tma else "")
                + ("lz" if self.lazy_rescale else "") + ("xb" if self.exp_bf16 else "")
                + (f"r{self.maxnreg}" if self.maxnreg else ""))

    @classmethod
    def parse(cls, name: str) -> "FlashConfig":
        """The config a `name` spells (m128n64w4s3tma, m128n64w8s3tmar128, ...)."""
        match = re.fullmatch(r"m(\d+)n(\d+)w(\d+)s(\d+)(tma)?(lz)?(xb)?(?:r(\d+))?", name.strip())
        if not match:
            raise ValueError(f"vision_flash: {name!r} is not a config name like m128n64w4s3tma")
        m, n, w, s, tma, lazy, xb, reg = match.groups()
        return cls(int(m), int(n), int(w), int(s), tma=bool(tma), maxnreg=int(reg) if reg else None,
                   lazy_rescale=bool(lazy), exp_bf16=bool(xb))

    def launch_options(self) -> dict:
        """Compile options of a launch: warps, pipeline stages, the register cap when set."""
        options = dict(num_warps=self.num_warps, num_stages=self.num_stages)
        if self.maxnreg:
            options["maxnreg"] = self.maxnreg
        return options
