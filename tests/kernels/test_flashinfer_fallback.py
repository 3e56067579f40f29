"""The FlashInfer backend's fallback (the backend for dtypes and head dims FlashInfer does not
run) takes the engine's decode choice and keeps it through ``fresh()``; the decode-context ratio
is the fallback's where the fallback runs. FlashInfer itself is not needed: the module is loaded
over a stand-in ``flashinfer`` that nothing here calls."""

from __future__ import annotations

import importlib.util
import sys
import types
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from kernels.attention.base import AttentionBackend
from kernels.attention.torch_attention import TorchAttention
from kernels.decode_choice import DecodeChoice

ROOT = Path(__file__).resolve().parents[2]
CHOICE = DecodeChoice("by-context", "q", Fraction(11, 10))


def _module(monkeypatch: pytest.MonkeyPatch) -> types.ModuleType:
    monkeypatch.setitem(sys.modules, "flashinfer", types.ModuleType("flashinfer"))
    path = ROOT / "kernels/attention/flashinfer_attention.py"
    spec = importlib.util.spec_from_file_location("flashinfer_attention_under_test", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, spec.name, module)  # its dataclasses look it up
    spec.loader.exec_module(module)
    return module


class Recording(TorchAttention):
    """A fallback that records the decode choice it was given and answers a ratio."""

    def __init__(self, device: torch.device, choice: DecodeChoice | None = None) -> None:
        super().__init__(device)
        self.choice = choice

    def fresh(self) -> Recording:
        return Recording(self.device, self.choice)

    def with_decode(self, choice: DecodeChoice) -> AttentionBackend:
        return Recording(self.device, choice)

    def decode_context_ratio(self, q_dtype: torch.dtype, k_cache: torch.Tensor) -> Fraction | None:
        return None if self.choice is None else self.choice.uniform_ratio


def test_the_fallback_takes_the_decode_choice_and_keeps_it(monkeypatch: pytest.MonkeyPatch) -> None:
    fi = _module(monkeypatch)
    cpu = torch.device("cpu")
    backend = fi.FlashInferAttention(cpu, Recording(cpu)).with_decode(CHOICE)
    assert isinstance(backend, fi.FlashInferAttention)
    assert backend.fallback.choice == CHOICE
    again = backend.fresh()
    assert again.fallback is not backend.fallback and again.fallback.choice == CHOICE
    # FlashInfer's own shapes: one decode plan whatever the contexts; others: the fallback's
    bf16 = torch.empty(4, 16, 8, 128, dtype=torch.bfloat16)
    assert backend.decode_context_ratio(torch.bfloat16, bf16) is None
    odd = torch.empty(4, 16, 8, 96, dtype=torch.float32)
    assert backend.decode_context_ratio(torch.float32, odd) == Fraction(11, 10)
    assert backend.decode_context_ratio(torch.float16, odd) == Fraction(11, 10)  # head dim 96


def test_the_default_fallback_is_triton_with_the_choice(monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("triton")
    from kernels.attention.triton_attention import TritonAttention

    fi = _module(monkeypatch)
    backend = fi.FlashInferAttention(torch.device("cpu")).with_decode(CHOICE)
    assert isinstance(backend.fallback, TritonAttention) and backend.fallback.choice == CHOICE
    assert backend.fresh().fallback.choice == CHOICE
