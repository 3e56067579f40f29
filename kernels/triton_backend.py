"""Registers the Triton kernels (priority 10) for CUDA devices; importing fails without triton.

Pointwise operators are the functions of kernels.triton; attention is the TritonAttention class.
``linear`` registers below the torch reference (opt-in with ``NANOLANG_KERNELS=linear=triton``):
it runs its own tiles only for the shapes its measured table lists, cuBLAS for the rest.
``argmax`` registers with the rest (measured 2026-12-01 on an H200: 4 us per 16-row step against
torch's 36, 1.001-1.004x in the engine; ``NANOLANG_KERNELS=argmax=torch`` restores torch's).
"""

from __future__ import annotations

import torch
import triton  # noqa: F401  (an ImportError here means "backend absent" to the registry)

from kernels import triton as triton_kernels
from kernels.attention.triton_attention import TritonAttention
from kernels.registry import register
from kernels.triton.linear import linear

PRIORITY = 10
OPERATORS = (
    "rms_norm",
    "add_rms_norm",
    "rotary",
    "silu_and_mul",
    "store_kv",
    "rotary_store_kv",
    "paged_attention",
    "sample",
    "argmax",
)


def available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


for _op in OPERATORS:
    _impl = TritonAttention if _op == "paged_attention" else getattr(triton_kernels, _op)
    register(_op, "triton", _impl, priority=PRIORITY, available=available)
register("linear", "triton", linear, priority=-1, available=available)
