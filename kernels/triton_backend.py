"""Registers the Triton kernels (priority 10) for CUDA devices; importing fails without triton.

Pointwise operators are the functions of kernels.triton; attention is the TritonAttention class.
"""

from __future__ import annotations

import torch
import triton  # noqa: F401  (an ImportError here means "backend absent" to the registry)

from kernels import triton as triton_kernels
from kernels.attention.triton_attention import TritonAttention
from kernels.registry import register

PRIORITY = 10
OPERATORS = (
    "rms_norm",
    "add_rms_norm",
    "rotary",
    "silu_and_mul",
    "store_kv",
    "paged_attention",
    "sample",
)


def available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


for _op in OPERATORS:
    _impl = TritonAttention if _op == "paged_attention" else getattr(triton_kernels, _op)
    register(_op, "triton", _impl, priority=PRIORITY, available=available)
