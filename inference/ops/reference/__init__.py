"""Pure-torch reference backend: the CPU path and the oracle fast backends are
tested against. Written for clarity, not speed (per-sequence Python loops are
fine here); math in fp32, results in the input dtype."""
from inference.ops.reference.ops import ReferenceOps as Ops

__all__ = ["Ops"]
