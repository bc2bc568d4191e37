"""CUDA op backend (Triton kernels + torch flash attention). Importing it needs
triton; `inference.ops.get_ops` imports it only when a CUDA worker asks."""
from inference.ops.cuda.ops import Ops

__all__ = ["Ops"]
