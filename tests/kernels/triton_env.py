"""Where the Triton kernel tests run: CUDA, or Triton's CPU interpreter when TRITON_INTERPRET=1."""

from __future__ import annotations

import os

import pytest
import torch

INTERPRET = os.environ.get("TRITON_INTERPRET") == "1"
DEVICE = "cuda" if torch.cuda.is_available() else "cpu"


def _interpreter_broken() -> bool:
    """Triton before 3.7 converts one-element arrays to Python ints in its interpreter in a way
    NumPy 2.4 refuses ("only 0-dimensional arrays can be converted", triton-lang/triton#9171);
    torch 2.11's CUDA build pins triton 3.6, so the test extra cannot require 3.7."""
    import numpy as np
    import triton

    def version(text: str) -> tuple[int, ...]:
        return tuple(int(p) for p in text.split("+")[0].split(".")[:2])

    return version(triton.__version__) < (3, 7) and version(np.__version__) >= (2, 4)


needs_triton_device = pytest.mark.skipif(
    not torch.cuda.is_available() and not INTERPRET,
    reason="needs a CUDA GPU (or TRITON_INTERPRET=1)",
)
if not torch.cuda.is_available() and INTERPRET and _interpreter_broken():
    needs_triton_device = pytest.mark.skip(
        reason="Triton < 3.7's interpreter fails under NumPy >= 2.4: install triton >= 3.7"
    )


def skip_if_interpreted(too_big: bool) -> None:
    """The CPU interpreter runs a kernel thousands of times slower: CI keeps the small cases."""
    if INTERPRET and too_big:
        pytest.skip("too slow for the CPU interpreter")


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
