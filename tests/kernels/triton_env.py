"""Where the Triton kernel tests run: CUDA, or Triton's CPU interpreter when TRITON_INTERPRET=1."""

from __future__ import annotations

import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"
needs_triton_device = pytest.mark.skipif(
    not torch.cuda.is_available() and not INTERPRET,
    reason="needs a CUDA GPU (or TRITON_INTERPRET=1)",
)


def seeded(seed: int) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def randn(*shape: int, dtype: torch.dtype, seed: int, scale: float = 1.0) -> torch.Tensor:
    """Fresh random values made on the CPU (reproducible), moved to the test device."""
    return (torch.randn(*shape, generator=seeded(seed)) * scale).to(dtype).to(DEVICE)


def ulp_tolerance(dtype: torch.dtype) -> dict[str, float]:
    """About one rounding step of dtype: kernels may round an intermediate differently."""
    return {
        torch.float16: {"rtol": 2e-3, "atol": 2e-3},
        torch.bfloat16: {"rtol": 1.6e-2, "atol": 1.6e-2},
        torch.float32: {"rtol": 1e-5, "atol": 1e-5},
    }[dtype]
