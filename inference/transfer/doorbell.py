"""META rings in shared memory with a futex doorbell (used by shm).

The receiver creates one bell (a 4 KiB segment) and one ring per sender
connection, and names both in its HELLO reply; the sender maps them. Instead
of a META frame through the loopback TCP stack, the sender writes the META
JSON into the ring's next slot and rings the bell (one FUTEX_WAKE syscall,
which costs nothing more when nobody sleeps on it). The receiver's recv()
takes from the rings itself: a decode worker that polls recv(timeout_s=0)
between steps is never woken per transfer, and a blocking recv() sleeps in
FUTEX_WAIT on the bell. No thread answers, so nothing on the sender's path
waits for another thread.

Ring layout (native endian):
  0   u64 head    slots published (written by the sender only)
  8   u64 tail    slots consumed (written by the receiver only)
  16  u32 closed  set by the receiver when it stops taking
  64 + (i % SLOTS) * SLOT_BYTES: u32 length | JSON bytes
Bell layout: 0 u32 counter (the futex word).
One producer per ring (the sender, under its send lock), one consumer at a
time (the receiver, under its ring lock). The producer writes the slot, then
head, then bumps the bell and wakes; the consumer reads the bell, then every
ring's head, and sleeps only while the bell still holds the value it read, so
a publish between its check and its sleep cannot be missed. This relies on
x86-64 store/load ordering (TSO): elsewhere AVAILABLE is False and shm sends
META frames over the socket instead. A full ring, a META larger than a slot
or a closed ring make publish() return False: the caller falls back to the
socket, never blocks.
"""
from __future__ import annotations

import ctypes
import platform
import struct

SLOTS = 1024  # a receiver that polls every 0.2 s still holds 1024 transfers
SLOT_BYTES = 1 << 10  # a META with block id runs is ~200 bytes
HEADER_BYTES = 64
RING_BYTES = HEADER_BYTES + SLOTS * SLOT_BYTES
BELL_BYTES = 4096
_LENGTH = struct.Struct("=I")  # a slot's u32 length, native endian as the reader's c_uint32
_SYS_FUTEX = {"x86_64": 202}.get(platform.machine())
_FUTEX_WAIT, _FUTEX_WAKE = 0, 1  # shared (not PRIVATE): the word lives in a file mapping of two processes
AVAILABLE = _SYS_FUTEX is not None
_libc = ctypes.CDLL(None, use_errno=True) if AVAILABLE else None


class _Timespec(ctypes.Structure):
    _fields_ = [("tv_sec", ctypes.c_long), ("tv_nsec", ctypes.c_long)]


class Bell:
    """The futex word at `base`."""

    def __init__(self, base: int):
        self._word = ctypes.c_uint32.from_address(base)
        self._ptr = ctypes.c_void_p(base)

    def value(self) -> int:
        return self._word.value

    def ring(self) -> None:
        self._word.value = (self._word.value + 1) & 0xFFFFFFFF  # a lost race still changes the value
        _libc.syscall(_SYS_FUTEX, self._ptr, _FUTEX_WAKE, 1 << 30, None, None, 0)

    def wait(self, seen: int, timeout_s: float) -> None:
        """Sleep until the word differs from `seen`, a wake, or the timeout."""
        ts = _Timespec(int(timeout_s), int(timeout_s % 1 * 1e9))
        _libc.syscall(_SYS_FUTEX, self._ptr, _FUTEX_WAIT, ctypes.c_uint32(seen), ctypes.byref(ts), None, 0)


class Ring:
    """View of a ring at `base` (an address of RING_BYTES shared bytes)."""

    def __init__(self, base: int):
        self._base = base
        self._head = ctypes.c_uint64.from_address(base)
        self._tail = ctypes.c_uint64.from_address(base + 8)
        self._closed = ctypes.c_uint32.from_address(base + 16)

    def publish(self, payload: bytes) -> bool:
        """Write payload into the next slot (the caller rings the bell, once for several); False,
        nothing written, when the ring is closed or full or the payload too large."""
        head = self._head.value
        if self._closed.value or len(payload) > SLOT_BYTES - 4 or head - self._tail.value >= SLOTS:
            return False
        slot = self._base + HEADER_BYTES + (head % SLOTS) * SLOT_BYTES
        record = _LENGTH.pack(len(payload)) + payload  # one foreign call for length and bytes
        ctypes.memmove(slot, record, len(record))
        self._head.value = head + 1  # after the bytes: TSO keeps the order
        return True

    def take(self) -> list[bytes]:
        """Every published, unconsumed payload, oldest first."""
        tail, head = self._tail.value, self._head.value
        out = []
        while tail < head:
            slot = self._base + HEADER_BYTES + (tail % SLOTS) * SLOT_BYTES
            out.append(ctypes.string_at(slot + 4, min(ctypes.c_uint32.from_address(slot).value, SLOT_BYTES - 4)))
            tail += 1
            self._tail.value = tail  # frees the slot only after its bytes are copied out
        return out

    def close(self) -> None:
        self._closed.value = 1
