"""Sliding-window attention is not implemented: a checkpoint whose window is shorter than the
context is served only up to its window (where full attention is the same), and an explicit
longer max_model_len is refused at load with a clear message."""

from __future__ import annotations

from pathlib import Path

import pytest

from runtime import LLM, SamplingParams
from runtime.config import ModelLoadError
from runtime.tiny import make_tiny_model


@pytest.fixture(scope="module")
def windowed(tmp_path_factory: pytest.TempPathFactory) -> dict[str, str]:
    root = tmp_path_factory.mktemp("windowed")
    qwen = dict(arch="qwen2", sliding_window=48, max_window_layers=0)
    specs = {
        "mistral": dict(arch="mistral", sliding_window=64),
        "qwen2": dict(qwen, use_sliding_window=True),
        "qwen2_off": dict(qwen, use_sliding_window=False),
    }
    return {name: str(make_tiny_model(Path(root / name), **kw)) for name, kw in specs.items()}


@pytest.mark.parametrize(("name", "window"), [("mistral", 64), ("qwen2", 48)])
def test_context_is_capped_at_the_window(windowed: dict[str, str], name: str, window: int) -> None:
    llm = LLM(windowed[name], dtype="float32", device="cpu")
    assert llm.engine.max_model_len == window
    with pytest.raises(ValueError, match="context is"):
        llm.generate([[5] * window], SamplingParams(max_tokens=2))
    out = llm.generate([[5] * (window - 4)], SamplingParams(max_tokens=10, ignore_eos=True))[0]
    assert out.finish_reason == "length" and len(out.token_ids) == 4


@pytest.mark.parametrize("name", ["mistral", "qwen2"])
def test_a_longer_max_model_len_is_refused_at_load(windowed: dict[str, str], name: str) -> None:
    with pytest.raises(ModelLoadError, match="sliding-window attention"):
        LLM(windowed[name], dtype="float32", device="cpu", max_model_len=256)


def test_a_window_that_is_off_changes_nothing(windowed: dict[str, str]) -> None:
    assert LLM(windowed["qwen2_off"], dtype="float32", device="cpu").engine.max_model_len == 512
