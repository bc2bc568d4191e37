"""Shared-memory segment files of the shm transport: made, mapped, removed, and swept.

A segment is a /dev/shm file (mode 0600) mapped into a tensor: a receiver's pool, its staging copy,
its doorbell and its META rings. Its name, `<PREFIX><pid namespace>-<pid>-<random>`, says which
process made it. Files are unlinked when their receiver closes (mappings stay valid) and at
interpreter exit. A process killed first (SIGKILL, a crash: a decode worker's whole pool) leaves its
files behind, and /dev/shm is memory; so the first segment a process makes sweeps the files of
processes that are gone: regular files of this user, of this pid namespace (containers may share
/dev/shm without sharing pids), whose pid no longer runs. Where the namespace cannot be read
(no /proc) nothing is swept. A sweep never fails the segment being made.
"""
from __future__ import annotations

import atexit
import ctypes
import logging
import os
import secrets
import stat

import torch

from inference.transfer.base import TransferError

log = logging.getLogger("inference.transfer.shm")

SHM_DIR = "/dev/shm"
PREFIX = "docpipe-kv-"
PID_MAX = 1 << 22  # Linux's largest pid_max
_CREATED: set[str] = set()  # files to unlink at exit
_swept = False


def _pid_namespace() -> str | None:
    """This process's pid namespace (its inode), or None where /proc cannot say."""
    try:
        return str(os.stat("/proc/self/ns/pid").st_ino)
    except OSError:
        return None


NAMESPACE = _pid_namespace()


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def _stale_pid(name: str) -> int | None:
    """The maker's pid of a segment name of this namespace, or None for any other name."""
    parts = name[len(PREFIX):].split("-") if name.startswith(PREFIX) else ()
    if len(parts) != 3 or parts[0] != NAMESPACE or not (parts[1].isascii() and parts[1].isdigit()):
        return None
    pid = int(parts[1])
    return pid if 0 < pid <= PID_MAX and pid != os.getpid() else None


def sweep_stale_segments() -> list[str]:
    """Unlink the segment files of processes that are gone (see the module docstring); returns
    the paths removed. A pid reused since only keeps a stale file longer."""
    removed: list[str] = []
    if NAMESPACE is None:
        return removed
    try:
        names = os.listdir(SHM_DIR)
    except OSError:
        return removed
    uid = os.getuid()
    for name in names:
        pid = _stale_pid(name)
        if pid is None:
            continue
        path = os.path.join(SHM_DIR, name)
        try:
            st = os.lstat(path)
            if not stat.S_ISREG(st.st_mode) or st.st_uid != uid or _pid_alive(pid):
                continue
            os.unlink(path)
        except OSError:  # gone meanwhile (another process swept it), or not ours to remove
            continue
        removed.append(path)
    if removed:
        log.info("shm: removed %d segment file(s) of processes that are gone, e.g. %s", len(removed), removed[0])
    return removed


def create_segment(num_bytes: int) -> tuple[str, torch.Tensor]:
    """A new segment of num_bytes, mapped and zeroed (its pages faulted in now, not during the
    first transfer); its path is unlinked at exit unless `unlink` ran first."""
    global _swept
    if not _swept:
        _swept = True
        try:
            sweep_stale_segments()
        except Exception as e:  # noqa: BLE001 (housekeeping: never fails the segment being made)
            log.warning("shm: sweeping stale segment files failed: %s", e)
    path = os.path.join(SHM_DIR, f"{PREFIX}{NAMESPACE or 0}-{os.getpid()}-{secrets.token_hex(8)}")
    fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_RDWR, 0o600)
    _CREATED.add(path)
    try:
        os.ftruncate(fd, num_bytes)
    except OSError:
        unlink(path)  # /dev/shm full: no file left behind
        raise
    finally:
        os.close(fd)
    mapped = torch.from_file(path, shared=True, size=num_bytes, dtype=torch.uint8)
    mapped.zero_()
    return path, mapped


def unlink(path: str) -> None:
    """Remove a segment file this process made (its mappings stay valid)."""
    if path in _CREATED:
        _CREATED.discard(path)
        try:
            os.unlink(path)
        except FileNotFoundError:
            pass


atexit.register(lambda: [unlink(p) for p in list(_CREATED)])


def map_peer_segment(path: object, num_bytes: object) -> torch.Tensor:
    """A receiver's segment, named in its HELLO reply, mapped for writing (only docpipe segment
    files in SHM_DIR, at least num_bytes long)."""
    if not isinstance(path, str) or type(num_bytes) is not int:
        raise TransferError("shm: HELLO reply lacks shm_path / shm_bytes")
    real = os.path.realpath(path)
    if os.path.dirname(real) != SHM_DIR or not os.path.basename(real).startswith(PREFIX):
        raise TransferError(f"shm: refusing to map {path!r}: not a docpipe segment in {SHM_DIR}")
    if os.stat(real).st_size < num_bytes:
        raise TransferError(f"shm: segment {real} is smaller than the {num_bytes}-byte pool")
    mapped = torch.from_file(real, shared=True, size=num_bytes, dtype=torch.uint8)
    _populate_for_write(mapped)
    return mapped


_MADV_POPULATE_WRITE = 23  # Linux >= 5.14


def _populate_for_write(mapped: torch.Tensor) -> None:
    """Fault the whole peer mapping in, writable, without touching its bytes: a
    fresh mapping otherwise pays a page fault per 4 KiB on first write (measured:
    126 ms instead of 20 ms for the first 256 MiB copy). Older kernels say
    EINVAL; then the first transfers pay the faults."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.madvise(ctypes.c_void_p(mapped.data_ptr()), ctypes.c_size_t(mapped.numel()), _MADV_POPULATE_WRITE):
            log.debug("shm: MADV_POPULATE_WRITE unavailable (errno %d)", ctypes.get_errno())
    except (OSError, AttributeError):
        pass
