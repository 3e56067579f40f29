"""Triton kernels, one file per operator, with the signatures of kernels.reference."""

from kernels.triton.add_rms_norm import add_rms_norm
from kernels.triton.argmax import argmax
from kernels.triton.paged_attention import paged_attention
from kernels.triton.rms_norm import rms_norm
from kernels.triton.rotary import rotary
from kernels.triton.rotary_store_kv import rotary_store_kv
from kernels.triton.sample import sample
from kernels.triton.silu_and_mul import silu_and_mul
from kernels.triton.store_kv import store_kv

__all__ = [
    "add_rms_norm",
    "argmax",
    "paged_attention",
    "rms_norm",
    "rotary",
    "rotary_store_kv",
    "sample",
    "silu_and_mul",
    "store_kv",
]
