"""What every benchmark records about the machine it ran on: the device's
name, library versions, and the device's ceilings measured in the same run
(copy bandwidth counting bytes read + written, bf16 matmul rate; random data,
warmed up, synchronized); and how a micro-benchmark's command line goes into
its JSON (`finish`)."""
from __future__ import annotations

import importlib
import json
import os
import platform
import time


def device_name(device: str = "cuda") -> str:
    import torch

    if device.startswith("cuda") and torch.cuda.is_available():
        return torch.cuda.get_device_name(torch.device(device))
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    return f"{line.split(':', 1)[1].strip()} ({os.cpu_count()} cores)"
    except OSError:
        pass
    return f"{platform.processor() or platform.machine()} ({os.cpu_count()} cores)"


def versions(*modules: str) -> dict:
    """python, platform, torch and each named module's __version__ (or VersionBind)."""
    out = {"python": platform.python_version(), "platform": platform.platform()}
    for name in ("torch", *modules):
        mod = importlib.import_module(name)
        out[name] = getattr(mod, "__version__", None) or getattr(mod, "VersionBind", "?")
    return out


def ceilings(device: str) -> dict:
    """Copy TB/s and bf16 matmul TFLOP/s of a CUDA device; {} elsewhere."""
    import torch

    if not device.startswith("cuda"):
        return {}

    def timed(fn) -> float:
        for _ in range(3):
            fn()
        torch.cuda.synchronize(device)
        t = time.perf_counter()
        for _ in range(10):
            fn()
        torch.cuda.synchronize(device)
        return (time.perf_counter() - t) / 10

    src = torch.empty(2 << 30, dtype=torch.uint8, device=device).random_(0, 255)
    dst = torch.empty_like(src)
    copy_s = timed(lambda: dst.copy_(src))
    src = dst = None  # 4 GiB back before the matmul
    a, b = (torch.randn(8192, 8192, dtype=torch.bfloat16, device=device) for _ in range(2))
    mm_s = timed(lambda: a @ b)
    return {"copy_TBps_rw": 2 * (2 << 30) / copy_s / 1e12, "bf16_matmul_TFLOPs": 2 * 8192**3 / mm_s / 1e12}


def finish(result: dict, module: str, args) -> None:
    """Record the command (`python -m module` and every parsed option but --out) in result and
    write it as JSON to args.out when given."""
    options = " ".join(f"--{k.replace('_', '-')} {v}" for k, v in vars(args).items() if k != "out" and v is not None)
    result["command"] = f"python -m {module} {options}".rstrip()
    if args.out:
        with open(args.out, "w") as f:
            json.dump(result, f, indent=1)
