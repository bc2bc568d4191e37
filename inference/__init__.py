"""docpipe's inference engine (Qwen2-VL family): `LLM` for offline batches,
`inference.engine.engine.LLMEngine` for step-level control."""
from inference.llm import LLM
from inference.sampling import SamplingParams

__all__ = ["LLM", "SamplingParams"]
