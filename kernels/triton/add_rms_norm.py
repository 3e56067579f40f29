"""Residual add fused with RMSNorm: one read of x and residual, two writes."""

from __future__ import annotations

import torch

from kernels.triton.rms_norm import launch_rms_norm


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """residual' = x + residual [..., H]; returns (rms_norm(residual'), residual')."""
    out, summed = launch_rms_norm(x, residual, weight, eps)
    assert summed is not None
    return out, summed
