"""The torch reference as an attention backend: the CPU path (and any device, when forced)."""

from __future__ import annotations

import torch

from kernels import reference
from kernels.attention.base import AttentionBackend
from kernels.metadata import AttentionMetadata


class TorchAttention(AttentionBackend):
    """Loops over sequences on the host, so it cannot be captured in a CUDA graph."""

    name = "torch"

    def supports_cuda_graphs(self, dtype: torch.dtype) -> bool:
        return False

    def forward(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
        k_scale: float = 1.0,
        v_scale: float = 1.0,
    ) -> torch.Tensor:
        return reference.paged_attention(q, k_cache, v_cache, meta, scale, k_scale, v_scale)
