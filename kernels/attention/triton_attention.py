"""The Triton kernels as an attention backend (importing fails without triton).

Everything the kernels need (lengths, block tables, query offsets) is read from device tensors at
run time and the grids depend only on shapes and ``max_context_len``, so there is nothing to plan
per batch and a captured forward stays valid for any batch loaded into the graph's buffers.
The one exception is the "by-context" decode choice (the default), whose kernel depends on how
uniform the batch's contexts are (by its choice's uniform-context ratio): decode CUDA graphs
capture it once per case (``decode_context_ratio``).

By default (``NANOLANG_KV_ORDER=longest``; ``batch`` turns it off) the decode rows' work items
are handed out longest context first (a launch's time is set by its longest items when they start
last): the order is made once per batch on the host from its lengths (on the device where the
host has none), and for a decode CUDA graph kept in a buffer per captured batch size that
``prepare_replay`` refills.
"""

from __future__ import annotations

from collections.abc import Sequence
from fractions import Fraction

import torch

from kernels.attention.base import AttentionBackend
from kernels.decode_choice import DecodeChoice
from kernels.host_copy import pinned, to_device
from kernels.metadata import AttentionMetadata
from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.paged_attention import (
    decode_contexts_uniform,
    paged_attention,
    picks_by_context,
)
from kernels.triton.paged_common import kv_order

# decode attention confined to an SM budget on a plain stream: the gather kernel, one program of
# eight warps per SM; its four stages of 64-token K and V tiles (about 128 KB of shared memory by
# the tiles' sizes) are meant to leave no room for a GEMM's program on its SM. Not yet measured:
# bench/carve_probe.py compares such configurations on the H200 (docs/performance.md, fifteenth
# session)
CONFINED_DECODE = DecodeConfig(block_n=64, num_warps=8, num_stages=4, ctas_per_sm=1)


class TritonAttention(AttentionBackend):
    """Split-KV decode kernel for the leading decodes, extend kernel for the rest."""

    name = "triton"

    def __init__(
        self,
        device: torch.device,
        num_sms: int | None = None,
        decode_config: DecodeConfig | None = None,
        choice: DecodeChoice | None = None,
    ) -> None:
        super().__init__(device)
        self.num_sms = num_sms  # decode grid sized to this SM budget (a pipeline partition)
        self.decode_config = decode_config
        self.choice = choice or DecodeChoice()  # whole-GPU kernel, dots over a float8 cache
        # "by-context": the last batch's metadata and whether its decode contexts are uniform,
        # decided once per batch rather than once per layer
        self._contexts: tuple[AttentionMetadata | None, bool | None] = (None, None)
        self.longest_first = kv_order() == "longest"
        # the last eager batch's metadata and its decode rows' order
        self._order: tuple[AttentionMetadata | None, torch.Tensor | None] = (None, None)
        # per captured batch size, the buffer its decode graphs read the order from
        self._graph_orders: dict[int, torch.Tensor] = {}

    def fresh(self) -> TritonAttention:
        return TritonAttention(self.device, self.num_sms, self.decode_config, self.choice)

    def on_sms(self, num_sms: int) -> TritonAttention:
        return TritonAttention(self.device, num_sms, self.decode_config, self.choice)

    def confined(self, num_sms: int) -> TritonAttention:
        return TritonAttention(self.device, num_sms, CONFINED_DECODE, self.choice)

    def with_decode(self, choice: DecodeChoice) -> TritonAttention:
        return TritonAttention(self.device, self.num_sms, self.decode_config, choice)

    def decode_context_ratio(self, q_dtype: torch.dtype, k_cache: torch.Tensor) -> Fraction | None:
        whole_gpu = self.num_sms is None and self.decode_config is None
        picks = whole_gpu and picks_by_context(self.choice, q_dtype, k_cache)
        return self.choice.uniform_ratio if picks else None

    def _uniform(self, meta: AttentionMetadata) -> bool | None:
        if self.choice.whole_gpu != "by-context":
            return None
        seen, uniform = self._contexts
        if seen is not meta:
            uniform = decode_contexts_uniform(meta, self.choice.uniform_ratio)
            self._contexts = (meta, uniform)
        return uniform

    def _decode_order(self, meta: AttentionMetadata) -> torch.Tensor | None:
        """The decode rows' order for this batch: longest context first (None: batch order)."""
        nd = meta.num_decode_seqs
        if not self.longest_first or nd < 2:
            return None
        if self.device.type == "cuda" and torch.cuda.is_current_stream_capturing():
            return self._graph_orders.get(nd)  # None: a graph captured without a buffer
        seen, order = self._order
        if seen is not meta or order is None:
            lens = meta.context_lens_host[:nd]
            if lens:
                order = to_device(longest_first(lens), meta.context_lens.device)
            else:
                order = torch.argsort(meta.context_lens[:nd], descending=True, stable=True)
                order = order.to(torch.int32)
            self._order = (meta, order)
        return order

    def prepare_capture(self, meta: AttentionMetadata) -> None:
        nd = meta.num_decode_seqs
        if self.longest_first and nd >= 2 and nd not in self._graph_orders:
            self._graph_orders[nd] = torch.arange(nd, dtype=torch.int32, device=self.device)

    def prepare_replay(self, meta: AttentionMetadata) -> None:
        buffer = self._graph_orders.get(meta.num_decode_seqs)
        lens = meta.context_lens_host[: meta.num_decode_seqs]
        if buffer is not None and lens:
            order = longest_first(lens)
            buffer.copy_(pinned(order) if buffer.is_cuda else order, non_blocking=True)

    def forward(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
        k_scale: float = 1.0,
        v_scale: float = 1.0,
        extend: bool = True,
    ) -> torch.Tensor:
        """The batch's attention; ``extend=False``: its decode rows alone (in this backend's
        order and by its choice), the rows past them left unwritten for another backend."""
        return paged_attention(
            q, k_cache, v_cache, meta, scale, k_scale, v_scale, num_sms=self.num_sms,
            decode_config=self.decode_config, choice=self.choice, uniform=self._uniform(meta),
            decode_order=self._decode_order(meta), extend=extend,
        )  # fmt: skip


def longest_first(lens: Sequence[int]) -> torch.Tensor:
    """Row indices by context length, longest first, ties in batch order (int32, on the host)."""
    return torch.argsort(torch.tensor(lens), descending=True, stable=True).to(torch.int32)
