"""The one place `ray` is imported: `require_ray()` returns the module or
raises RayNotInstalled with the install command, so `docpipe.ray` imports
without the extra and fails only when a Ray function is called."""
from __future__ import annotations

INSTALL_HINT = "ray is not installed: pip install 'docpipe[ray]'"


class RayNotInstalled(ImportError):
    """The `ray` extra is missing; the message says how to install it."""


def require_ray():
    """The `ray` module (with `ray.data` loaded), or RayNotInstalled."""
    try:
        import ray
        import ray.data  # noqa: F401 - the job needs Ray Data, not only Ray core
    except ImportError as e:
        raise RayNotInstalled(f"{INSTALL_HINT} ({e})") from e
    return ray
