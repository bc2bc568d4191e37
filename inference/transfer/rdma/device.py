"""RDMA availability, decided at selection without importing pyverbs first.

Order: the kernel's device list in /sys/class/infiniband (no entries: no
device, the common case on cloud and CI machines), then pyverbs importable,
then pyverbs' own device list call (it raises when the kernel lacks
InfiniBand support). Each failure is a TransportUnavailable naming the reason
and the way out (another transport or a layout fallback).
"""
from __future__ import annotations

import os

from inference.transfer.base import TransferConfig, TransportUnavailable

SYSFS_DIR = "/sys/class/infiniband"
_WAY_OUT = "choose tcp or shm, or set fallback in the layout"


def sysfs_devices(sysfs_dir: str = SYSFS_DIR) -> list[str]:
    try:
        return sorted(os.listdir(sysfs_dir))
    except (FileNotFoundError, NotADirectoryError, PermissionError):
        return []


def check_available(config: TransferConfig, sysfs_dir: str = SYSFS_DIR) -> None:
    devices = sysfs_devices(sysfs_dir)
    if not devices:
        state = "is empty" if os.path.isdir(sysfs_dir) else "does not exist"
        raise TransportUnavailable(f"rdma: no RDMA device found ({sysfs_dir} {state}); {_WAY_OUT}")
    if config.rdma_device and config.rdma_device not in devices:
        raise TransportUnavailable(f"rdma: device {config.rdma_device!r} not found (have {devices}); {_WAY_OUT}")
    try:
        from inference.transfer.rdma import verbs
    except ImportError as e:
        raise TransportUnavailable(f"rdma: pyverbs is not importable ({e}); install rdma-core's python3-pyverbs "
                                   f"(or the rdma extra), or {_WAY_OUT}") from None
    try:
        names = verbs.device_names()
    except Exception as e:  # pyverbs raises its own error types here
        raise TransportUnavailable(f"rdma: listing RDMA devices failed ({e}); {_WAY_OUT}") from None
    if not names:
        raise TransportUnavailable(f"rdma: libibverbs sees no RDMA device; {_WAY_OUT}")
