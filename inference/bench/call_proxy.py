"""CallProxy: an object's calls through a wrapper, its other attributes as
they are. A bench that times or labels a callable object (the sampler, the
processor) needs it: Python calls an instance through its type, so an
instance attribute cannot replace `__call__`. The bench swaps the proxy in
for the object's owner's attribute and puts the object back when done."""
from __future__ import annotations


class CallProxy:
    def __init__(self, inner, call):
        self._inner = inner  # the wrapped object: every attribute but the call is its own
        self._call = call  # what a call runs instead (it calls `inner` itself)

    def __call__(self, *args, **kwargs):
        return self._call(*args, **kwargs)

    def __getattr__(self, name):
        return getattr(self._inner, name)
