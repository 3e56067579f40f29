"""Registers FlashInfer's attention (priority 20) for CUDA devices; importing fails without it."""

from __future__ import annotations

from kernels.attention.flashinfer_attention import FlashInferAttention, available
from kernels.registry import register

PRIORITY = 20

register("paged_attention", "flashinfer", FlashInferAttention, priority=PRIORITY,
         available=available)  # fmt: skip
