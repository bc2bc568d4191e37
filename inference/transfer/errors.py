"""Errors of the transfer subsystem, in a module of their own so that the
value types (blockids, meta) can raise them without importing base.py.

base.py re-exports both; callers keep importing them from there or from
the package.
"""
from __future__ import annotations


class TransportUnavailable(RuntimeError):
    """The chosen transport cannot run on this machine (raised at selection)."""


class TransferError(RuntimeError):
    """A transfer could not be carried out (bad ids, peer error, lost link)."""
