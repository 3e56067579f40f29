"""The inference runtime: paged KV cache, continuous batching, Llama-family models."""

from runtime.config import EngineConfig, ModelConfig, ModelLoadError, presets
from runtime.engine import LLMEngine
from runtime.llm import LLM
from runtime.outputs import RequestMetrics, RequestOutput
from runtime.sampling_params import ConstraintError, SamplingParams

__all__ = [
    "LLM",
    "ConstraintError",
    "EngineConfig",
    "LLMEngine",
    "ModelConfig",
    "ModelLoadError",
    "RequestMetrics",
    "RequestOutput",
    "SamplingParams",
    "presets",
]
