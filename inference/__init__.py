"""docpipe's inference engine (Qwen2-VL family): `LLM` for offline batches,
`inference.engine.engine.LLMEngine` for step-level control.

Exports resolve lazily so importing a subpackage (inference.ops,
inference.transfer) does not load the whole engine.
"""
from __future__ import annotations

__all__ = ["LLM", "SamplingParams"]


def __getattr__(name: str):
    if name == "LLM":
        from inference.llm import LLM
        return LLM
    if name == "SamplingParams":
        from inference.sampling import SamplingParams
        return SamplingParams
    raise AttributeError(f"module 'inference' has no attribute {name!r}")
