"""Registers FlashInfer's attention (priority 20) for CUDA devices; importing fails without it.

Where triton imports too, it also registers "flashinfer-prefill" (Triton's decode, FlashInfer's
prefill; kernels.attention.flashinfer_prefill) above both: the registry's choice wherever both
import. Measured on an H200 at 1,000 requests in one run (Llama-3-8B, 2026-12-02): Splitwise-like
30,640 total tok/s against Triton's 30,096 and FlashInfer's 30,298, ShareGPT-like 25,012 against
24,896 and 24,641 (bench/results/2026-12-02-h200-llama-3-8b-attention-backends-1000-*.json).
``attention_backend="triton"`` or ``"flashinfer"`` still picks either whole backend.
"""

from __future__ import annotations

import logging

from kernels.attention.flashinfer_attention import FlashInferAttention, available
from kernels.registry import register

PRIORITY = 20
PREFILL_PRIORITY = 25  # above flashinfer's 20 and triton's 10: it is their faster halves

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
