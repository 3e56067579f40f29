"""Registers FlashInfer's attention (priority 20) for CUDA devices; importing fails without it.

Where triton imports too, it also registers "flashinfer-prefill" (Triton's decode, FlashInfer's
prefill; kernels.attention.flashinfer_prefill) below both "triton" and "flashinfer": opt-in by
name (``attention_backend="flashinfer-prefill"``), never the registry's choice.
"""

from __future__ import annotations

import logging

from kernels.attention.flashinfer_attention import FlashInferAttention, available
from kernels.registry import register

PRIORITY = 20
PREFILL_PRIORITY = 5  # below triton's 10: wherever it is available, so is triton

logger = logging.getLogger("kernels")


def _register_prefill() -> None:
    """Register "flashinfer-prefill" where its Triton side imports."""
    try:
        from kernels.attention.flashinfer_prefill import FlashInferPrefillAttention
    except ImportError as exc:
        logger.debug("attention backend flashinfer-prefill unavailable: %s", exc)
        return
    register("paged_attention", "flashinfer-prefill", FlashInferPrefillAttention,
             priority=PREFILL_PRIORITY, available=available)  # fmt: skip


register("paged_attention", "flashinfer", FlashInferAttention, priority=PRIORITY,
         available=available)  # fmt: skip
_register_prefill()
