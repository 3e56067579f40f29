"""Triton RMSNorm / fused add-RMSNorm / SiLU-and-mul against the torch reference."""

from __future__ import annotations

import math

import pytest
import torch

pytest.importorskip("triton")
from triton_env import (
    DEVICE,
    INTERPRET,
    needs_triton_device,
    randn,
    skip_if_interpreted,
    ulp_tolerance,
)

from kernels import reference
from kernels.triton import add_rms_norm, rms_norm, silu_and_mul

pytestmark = [pytest.mark.gpu, needs_triton_device]
DTYPES = [torch.float16, torch.bfloat16, torch.float32]
SHAPES = [(1, 64), (7, 4096), (3, 5, 1000), (129, 5120)]


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_rms_norm(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    skip_if_interpreted(math.prod(shape) > 100_000)
    x = randn(*shape, dtype=dtype, seed=sum(shape), scale=3.0)
    weight = randn(shape[-1], dtype=dtype, seed=1)
    out = rms_norm(x, weight, 1e-5)
    expected = reference.rms_norm(x, weight, 1e-5)
    assert out.dtype == expected.dtype and out.shape == expected.shape
    torch.testing.assert_close(out, expected, **ulp_tolerance(dtype))


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_add_rms_norm(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    skip_if_interpreted(math.prod(shape) > 100_000)
    x = randn(*shape, dtype=dtype, seed=2 + sum(shape))
    residual = randn(*shape, dtype=dtype, seed=3 + sum(shape), scale=4.0)
    weight = randn(shape[-1], dtype=dtype, seed=4)
    out, summed = add_rms_norm(x, residual, weight, 1e-6)
    expected_sum = x + residual
    if INTERPRET:  # the CPU interpreter truncates float32 -> bfloat16 instead of rounding
        torch.testing.assert_close(summed, expected_sum, **ulp_tolerance(dtype))
    else:
        assert torch.equal(summed, expected_sum)
    # normed from the kernel's own sum, which on the GPU is bit-identical to the reference's
    expected_out = reference.rms_norm(summed, weight, 1e-6)
    torch.testing.assert_close(out, expected_out, **ulp_tolerance(dtype))


def test_rms_norm_float32_weight_promotes_like_the_reference() -> None:
    x = randn(4, 256, dtype=torch.bfloat16, seed=5)
    weight = randn(256, dtype=torch.float32, seed=6)
    out = rms_norm(x, weight, 1e-6)
    expected = reference.rms_norm(x, weight, 1e-6)
    assert out.dtype == torch.float32
    torch.testing.assert_close(out, expected, rtol=1e-2, atol=1e-2)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 256), (37, 2 * 11008), (2, 3, 2 * 1000), (300, 2 * 14336)])
def test_silu_and_mul(shape: tuple[int, ...], dtype: torch.dtype) -> None:
    skip_if_interpreted(math.prod(shape) > 100_000)
    x = randn(*shape, dtype=dtype, seed=7 + shape[0], scale=3.0)
    torch.testing.assert_close(silu_and_mul(x), reference.silu_and_mul(x), **ulp_tolerance(dtype))


def test_silu_and_mul_on_a_strided_view() -> None:
    big = randn(16, 3 * 512, dtype=torch.bfloat16, seed=8)
    x = big[:, 256 : 256 + 1024]  # rows with a stride larger than their length
    torch.testing.assert_close(silu_and_mul(x), reference.silu_and_mul(x))
    assert DEVICE in str(x.device)
