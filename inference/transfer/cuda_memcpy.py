"""cudaMemcpyAsync called straight from Python, for copies the host issues one by one (cuda-ipc's
runs of blocks).

torch's copy_ costs two tensor views and an operator dispatch per call; on the H200's host that
was tens of us per copy, more than a 4 MiB copy takes on the device (session 10). The runtime's own
call through ctypes is a few us. The calls keep the GIL (ctypes.PyDLL): cudaMemcpyAsync returns once
the copy is queued, while a GIL released around each call had to be won back, after every copy,
from the sender's ACK reader (and in a prefill worker the engine's loop thread). Session 11 on the
H200: the sender's copy-issuing time fell from 17 to 8.5-10 us a transfer (torch's stream context
dropped at the same time); bench transfer could not tell the two apart (76-98 % of the device copy
at 1-4 MiB either way in one run), so the choice rests on that contention; `docpipe bench pd` on
gpu-1p1d-mps, measured with the GIL held, kept decode TPOT p99 4.2-5.1x below the monolithic
engine's at 0.99-1.00 of its throughput with prefills running beside the copies.

The runtime used is the one this process already loaded (torch's CUDA build links libcudart
dynamically), used only when it is the one mapped and of torch's CUDA major version; none is loaded
when CUDA is not, and a build with the runtime linked in statically has none to find: then
runtime() is None and callers use copy_.
DOCPIPE_CUDA_IPC_COPY=torch makes callers use copy_ anyway (A/B runs, debugging).
"""
from __future__ import annotations

import ctypes
import functools
import os

from inference.transfer.base import TransferError

COPY_ENV = "DOCPIPE_CUDA_IPC_COPY"
_DEFAULT_KIND = 4  # cudaMemcpyDefault: the pointers say where the bytes are (same device or a peer's)


class RuntimeCopyError(TransferError):
    """cudaMemcpyAsync returned an error (cleared from the runtime's last error before raising)."""


class RuntimeCopy:
    """copy(dst_ptr, src_ptr, num_bytes, stream_handle): one cudaMemcpyAsync, not waited for."""

    def __init__(self, lib: ctypes.CDLL, path: str):
        self.path = path
        self._memcpy = lib.cudaMemcpyAsync
        self._memcpy.argtypes = [ctypes.c_void_p, ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_void_p]
        self._memcpy.restype = ctypes.c_int
        self._error = lib.cudaGetErrorString
        self._error.argtypes = [ctypes.c_int]
        self._error.restype = ctypes.c_char_p
        self._clear = lib.cudaGetLastError  # resets the error a failed call leaves behind
        self._clear.restype = ctypes.c_int

    def __call__(self, dst: int, src: int, num_bytes: int, stream: int) -> None:
        err = self._memcpy(dst, src, num_bytes, _DEFAULT_KIND, stream)
        if err:
            self._clear()  # else torch's next launch check would report it against its own kernel
            raise RuntimeCopyError(f"cudaMemcpyAsync of {num_bytes} bytes failed: {self._error(err).decode(errors='replace')} ({err})")


def loaded_runtimes(maps: str = "/proc/self/maps") -> list[str]:
    """Paths of the CUDA runtime libraries mapped into this process (none off Linux)."""
    try:
        with open(maps) as f:
            return sorted({line.split()[-1] for line in f if "/libcudart.so" in line})
    except OSError:
        return []


def torch_runtime(paths: list[str], cuda_version: str | None) -> str | None:
    """The one mapped runtime that is torch's: exactly one mapped, its soname's major version that
    of torch's CUDA (another library's runtime keeps its own current device per thread, which
    torch.cuda.stream() does not set). None otherwise."""
    if len(paths) != 1 or not cuda_version:
        return None
    name = os.path.basename(paths[0])  # libcudart.so.12 or libcudart.so.12.8.90
    major = name.split(".so.", 1)[1].split(".")[0] if ".so." in name else ""
    return paths[0] if major == cuda_version.split(".")[0] else None


@functools.cache
def _find() -> RuntimeCopy | None:
    import torch

    path = torch_runtime(loaded_runtimes(), torch.version.cuda)
    if path is None:
        return None
    try:  # the mapped library again: same handle, same state
        return RuntimeCopy(ctypes.PyDLL(path), path)
    except (OSError, AttributeError):
        return None


_DISABLED: list[str] = []  # why the ctypes path was turned off in this process (a copy failed)


def disable(reason: str) -> None:
    """A copy through the runtime failed: every sender of this process uses copy_ from now on."""
    _DISABLED.append(reason)


def runtime() -> RuntimeCopy | None:
    """The loaded runtime's copy, or None (use copy_): none loaded yet, COPY_ENV=torch, or a copy
    failed earlier in this process (disable). Call it once CUDA is in use (a result of None
    before that is not kept)."""
    if _DISABLED or os.environ.get(COPY_ENV, "").strip().lower() == "torch":
        return None
    found = _find()
    if found is None:
        _find.cache_clear()  # CUDA may load it later
    return found
