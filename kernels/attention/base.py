"""The interface every paged-attention backend implements (the shape mini-sglang uses).

A backend instance belongs to one model runner (``Ops.fresh()`` makes one per runner) and sees one
batch at a time, described by an :class:`AttentionMetadata`:

1. ``prepare(meta)``: once per batch, before the first layer and never inside a CUDA-graph
   capture. Host-side planning (FlashInfer's ``plan``) happens here.
2. ``forward(q, k_cache, v_cache, meta, scale, k_scale, v_scale)``: once per layer (the two
   scales: a float8 cache holds k / k_scale and v / v_scale; 1.0 for 16-bit caches). A metadata
   object that was not prepared is prepared on the spot (kernel tests, pipeline nano-batches),
   except during a capture, where that is an error.

CUDA graphs replay decode-only batches padded to a bucket size ``b`` over static buffers:

3. ``init_cuda_graphs(max_batch_size, max_blocks_per_seq)``: once, before any capture.
4. ``prepare_capture(meta)``: before capturing the bucket whose static metadata is ``meta``; the
   forward captured afterwards receives this same object.
5. ``prepare_replay(meta)``: before every replay of that bucket, outside the capture; ``meta``
   carries the real (padded) batch in its host tuples, so a backend that planned at capture time
   re-plans into the buffers its captured kernels read.

Backends that read everything from device tensors at run time (Triton) need none of the hooks.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from fractions import Fraction
from typing import ClassVar

import torch

from kernels.decode_choice import DecodeChoice
from kernels.metadata import AttentionMetadata


class AttentionBackend(ABC):
    """Causal attention of q [T, Hq, D] over paged caches [blocks, page, Hk, D] -> [T, Hq, D]."""

    name: ClassVar[str]

    def __init__(self, device: torch.device) -> None:
        self.device = torch.device(device)

    def fresh(self) -> AttentionBackend:
        """A new instance with the same settings and no per-batch or graph state."""
        return type(self)(self.device)

    def on_sms(self, num_sms: int) -> AttentionBackend:
        """The backend to use on a partition of ``num_sms`` SMs (itself when it cannot size its
        grid to a budget)."""
        return self

    def confined(self, num_sms: int) -> AttentionBackend:
        """The backend to run beside other work on a plain stream within ``num_sms`` SMs: its
        decode grid at most one program per SM, so that it holds no more SMs than that (a grid
        merely sized to a budget, ``on_sms``, may place several small programs per SM and so
        spread over the whole device). Itself when it cannot."""
        return self

    def with_decode(self, choice: DecodeChoice) -> AttentionBackend:
        """A new instance that runs decode attention as ``choice`` says (whole-GPU kernel, dots
        over a float8 cache); backends without such a choice return themselves."""
        return self

    def decode_context_ratio(self, q_dtype: torch.dtype, k_cache: torch.Tensor) -> Fraction | None:
        """Where this backend's decode kernel for queries of ``q_dtype`` over ``k_cache`` depends
        on how uniform a batch's contexts are (AttentionMetadata.decode_contexts_uniform), the
        ratio it classes them by (uniform: max <= ratio x mean; kernels.decode_choice): decode
        CUDA graphs then capture each batch size once per case and pick by it. None (one kernel
        whatever the contexts) for most backends."""
        return None

    def supports_cuda_graphs(self, dtype: torch.dtype) -> bool:
        """Whether a forward in ``dtype`` can be captured (False: run every batch eagerly)."""
        return True

    def prepare(self, meta: AttentionMetadata) -> None:  # noqa: B027 (optional hook)
        """Per-batch planning, outside any capture; nothing for backends that need none."""

    @abstractmethod
    def forward(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
        k_scale: float = 1.0,
        v_scale: float = 1.0,
    ) -> torch.Tensor: ...

    def init_cuda_graphs(self, max_batch_size: int, max_blocks_per_seq: int) -> None:  # noqa: B027
        """Allocate whatever static buffers captured kernels will read."""

    def prepare_capture(self, meta: AttentionMetadata) -> None:
        self.prepare(meta)

    def prepare_replay(self, meta: AttentionMetadata) -> None:  # noqa: B027
        """Update the buffers a captured forward reads for the batch in ``meta``'s host tuples."""
