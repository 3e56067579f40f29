"""Operators behind one interface: a torch reference for each, faster backends where installed.

The version below is this package's own (it ships inside the ``nanolang`` distribution); it is kept
far below the range that transformers accepts for the unrelated Hugging Face ``kernels`` package,
so transformers never mistakes this package for that one.
"""

from kernels.attention import AttentionBackend
from kernels.decode_choice import DecodeChoice
from kernels.metadata import AttentionMetadata
from kernels.registry import (
    OPERATORS,
    Ops,
    attention_backends,
    get_ops,
    implementations,
    register,
)

__version__ = "0.0.0+nanolang"
__all__ = [
    "OPERATORS",
    "AttentionBackend",
    "AttentionMetadata",
    "DecodeChoice",
    "Ops",
    "attention_backends",
    "get_ops",
    "implementations",
    "register",
]
