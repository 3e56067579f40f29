"""Attention backends: classes that own their per-batch planning and their CUDA-graph state.

Every backend implements :class:`AttentionBackend`; the registry picks one per device
(``kernels.get_ops(device).paged_attention``). The pointwise operators stay plain functions.
"""

from kernels.attention.base import AttentionBackend
from kernels.attention.torch_attention import TorchAttention

__all__ = ["AttentionBackend", "TorchAttention"]
