"""The inference runtime: paged KV cache, continuous batching, Llama-family models.

Names are imported on first use, so that light submodules (``runtime.bench.options``, say) can
be imported without loading torch.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from runtime.config import EngineConfig, ModelConfig, ModelLoadError, presets
    from runtime.engine import LLMEngine
    from runtime.llm import LLM
    from runtime.outputs import OutputKind, RequestMetrics, RequestOutput
    from runtime.sampling_params import ConstraintError, SamplingParams

_EXPORTS = {
    "LLM": "runtime.llm",
    "LLMEngine": "runtime.engine",
    "ConstraintError": "runtime.sampling_params",
    "SamplingParams": "runtime.sampling_params",
    "EngineConfig": "runtime.config",
    "ModelConfig": "runtime.config",
    "ModelLoadError": "runtime.config",
    "presets": "runtime.config",
    "OutputKind": "runtime.outputs",
    "RequestMetrics": "runtime.outputs",
    "RequestOutput": "runtime.outputs",
}


def __getattr__(name: str) -> Any:
    if name not in _EXPORTS:
        raise AttributeError(f"module 'runtime' has no attribute {name!r}")
    return getattr(importlib.import_module(_EXPORTS[name]), name)


__all__ = [
    "LLM",
    "ConstraintError",
    "EngineConfig",
    "LLMEngine",
    "ModelConfig",
    "ModelLoadError",
    "OutputKind",
    "RequestMetrics",
    "RequestOutput",
    "SamplingParams",
    "presets",
]
