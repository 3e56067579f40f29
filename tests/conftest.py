"""Shared fixtures: small random-weight checkpoints written with transformers (no download)."""

from __future__ import annotations

import os

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")


def _cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


# Without a GPU, the Triton kernel tests run on Triton's CPU interpreter (set before any kernel
# module is imported: triton.jit reads it when a kernel is defined). The runtime never loads the
# Triton backend on the CPU, so nothing else changes.
if not _cuda_available():
    os.environ.setdefault("TRITON_INTERPRET", "1")


@pytest.fixture(scope="session")
def tiny_models(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    from runtime.tiny import make_tiny_model

    root = tmp_path_factory.mktemp("models")
    llama3_rope = {
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        "rope_theta": 500000.0,
    }
    yarn_rope = {
        "rope_scaling": {
            "rope_type": "yarn",
            "factor": 4.0,
            "original_max_position_embeddings": 32,
        },
        "max_position_embeddings": 128,
    }
    specs = {
        "llama": dict(arch="llama", seed=1),
        "mistral": dict(arch="mistral", seed=2, num_key_value_heads=1),
        "qwen2": dict(arch="qwen2", seed=3),
        "llama_tied": dict(arch="llama", seed=4, tie_word_embeddings=True, num_key_value_heads=4),
        "llama3_rope": dict(arch="llama", seed=5, **llama3_rope),
        "llama_sharded": dict(arch="llama", seed=6, max_shard_size="100KB"),
        "qwen2_yarn": dict(arch="qwen2", seed=7, **yarn_rope),
        "llama_dynamic_rope": dict(
            arch="llama", seed=8, rope_scaling={"rope_type": "dynamic", "factor": 2.0}
        ),
    }
    return {name: str(make_tiny_model(root / name, **kw)) for name, kw in specs.items()}


@pytest.fixture(scope="session")
def tiny_llama(tiny_models: dict[str, str]) -> str:
    return tiny_models["llama"]


@pytest.fixture(autouse=True)
def _release_gpu_memory():
    """Engines hold reference cycles (graphs, runner, engine): collect them after each test so
    the next test's KV cache, sized to the GPU's free memory, sees that memory free again."""
    yield
    import gc

    import torch

    if torch.cuda.is_available():
        gc.collect()
        torch.cuda.empty_cache()
