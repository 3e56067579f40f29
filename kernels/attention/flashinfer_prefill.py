"""Triton's decode and FlashInfer's prefill as one attention backend, "flashinfer-prefill" (the
registry's choice where both import; importing fails without flashinfer or triton).

Why: on an H200, FlashInfer's causal batch prefill ran 1.36-1.58x as fast as the Triton extend
kernel (7 chunks of 1,155 tokens: 0.272 against 0.369 ms per layer;
bench/results/2026-12-01-h200-extend-attention-flashinfer.json), while the Triton decode, its work
items handed out longest context first, is as fast as FlashInfer's decode or faster on ragged
batches (docs/performance.md). So a batch's rows go to the faster kernel of each kind:

- the decode rows to a TritonAttention, as that backend runs them: its longest-first order, its
  by-context kernel choice and its CUDA-graph hooks. Decode CUDA graphs hold decode-only batches,
  so they are pure Triton and nothing is planned for FlashInfer around a capture;
- the extend rows of a batch that has any to FlashInfer's causal BatchPrefillWithPagedKVCache
  wrapper, written into the rows of the same output past the decodes. Its plan is made on the
  host once per batch in ``prepare`` (once a forward has shown the layout) or on the spot in an
  eager forward, and kept in one of a few slots (flashinfer_attention.Slots, extend rows only).

Queries FlashInfer does not run (dtypes other than fp16 / bf16, head dims other than 64, 128 and
256) and decode-only batches take the Triton backend's forward unchanged.
"""

from __future__ import annotations

from fractions import Fraction

import torch

from kernels.attention.base import AttentionBackend
from kernels.attention.flashinfer_attention import FlashInferAttention, Layout, Slots
from kernels.attention.triton_attention import TritonAttention
from kernels.decode_choice import DecodeChoice
from kernels.metadata import AttentionMetadata


class FlashInferPrefillAttention(AttentionBackend):
    """Triton's decode kernels for the leading decodes, FlashInfer's prefill for the rest."""

    name = "flashinfer-prefill"

    def __init__(
        self,
        device: torch.device,
        triton: TritonAttention | None = None,
        slots: Slots | None = None,
    ) -> None:
        super().__init__(device)
        # the decode side: its order, its decode choice, its SM budget and its graph buffers
        self.triton = triton if triton is not None else TritonAttention(self.device)
        # the extend rows' plans; shared by the partitions' instances (``on_sms``): FlashInfer's
        # grid is not sized to an SM budget, and a plan is found by its batch's metadata
        self.slots = slots if slots is not None else Slots(self.device, decode=False)
        self.layout: Layout | None = None  # from the first mixed forward FlashInfer runs

    def fresh(self) -> FlashInferPrefillAttention:
        return FlashInferPrefillAttention(self.device, self.triton.fresh())

    def on_sms(self, num_sms: int) -> FlashInferPrefillAttention:
        """The decode grid sized to ``num_sms`` SMs; the prefill plans shared with this one."""
        return FlashInferPrefillAttention(self.device, self.triton.on_sms(num_sms), self.slots)

    def confined(self, num_sms: int) -> FlashInferPrefillAttention:
        """The Triton decode confined to ``num_sms`` SMs (FlashInfer's prefill is not)."""
        return FlashInferPrefillAttention(self.device, self.triton.confined(num_sms), self.slots)

    def with_decode(self, choice: DecodeChoice) -> FlashInferPrefillAttention:
        """The Triton decode runs as ``choice`` says (kept by ``fresh``)."""
        return FlashInferPrefillAttention(self.device, self.triton.with_decode(choice))

    def decode_context_ratio(self, q_dtype: torch.dtype, k_cache: torch.Tensor) -> Fraction | None:
        return self.triton.decode_context_ratio(q_dtype, k_cache)

    def supports_cuda_graphs(self, dtype: torch.dtype) -> bool:
        return self.triton.supports_cuda_graphs(dtype)

    def prepare(self, meta: AttentionMetadata) -> None:
        """Plan FlashInfer's prefill for a batch with extend rows, once the layout is known."""
        self.triton.prepare(meta)
        if self.layout is not None and meta.num_decode_seqs < meta.num_seqs:
            self.slots.plan(meta, self.layout)

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
        if not FlashInferAttention.runs(q) or meta.num_decode_seqs == meta.num_seqs:
            return self.triton.forward(q, k_cache, v_cache, meta, scale, k_scale, v_scale)
        q = q.contiguous()
        self.layout = Layout.of(q, k_cache, scale)
        plan = self.slots.plan(meta, self.layout)  # made by prepare, else now
        out = self.triton.forward(q, k_cache, v_cache, meta, scale, k_scale, v_scale,
                                  extend=False)  # fmt: skip
        plan.run(q, k_cache, v_cache, out, k_scale, v_scale)  # the rows past the decodes
        return out

    # CUDA graphs: decode-only batches, the Triton side's alone
    def init_cuda_graphs(self, max_batch_size: int, max_blocks_per_seq: int) -> None:
        self.triton.init_cuda_graphs(max_batch_size, max_blocks_per_seq)

    def prepare_capture(self, meta: AttentionMetadata) -> None:
        self.triton.prepare_capture(meta)

    def prepare_replay(self, meta: AttentionMetadata) -> None:
        self.triton.prepare_replay(meta)
