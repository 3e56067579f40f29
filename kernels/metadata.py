"""Plain data that attention kernels read: where each sequence's queries and KV blocks are."""

from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionMetadata:
    """Describes one flat token batch of ``B`` sequences for paged attention.

    Sequences are ordered decodes first (one query token each), then prefill / extend chunks.
    Sequence ``i`` owns query rows ``cu_seqlens_q[i]:cu_seqlens_q[i+1]`` and attends causally over
    its first ``context_lens[i]`` cached tokens (the chunk's own tokens included, already stored);
    query row ``j`` of the chunk sits at position ``context_lens[i] - q_len + j``.
    """

    cu_seqlens_q: torch.Tensor  # [B + 1] int32, on the device
    context_lens: torch.Tensor  # [B] int32, on the device
    block_tables: torch.Tensor  # [B, max_blocks] int32, on the device; unused entries are 0
    slot_mapping: torch.Tensor  # [T] int64: cache slot (block * block_size + offset) per token
    num_decode_seqs: int  # the first num_decode_seqs sequences have exactly one query token
    max_query_len: int
    max_context_len: int
    block_size: int
    # host copies, for the reference path and for kernels that plan on the CPU
    cu_seqlens_q_host: tuple[int, ...] = ()
    context_lens_host: tuple[int, ...] = ()

    @property
    def num_seqs(self) -> int:
        return int(self.context_lens.shape[0])

    @property
    def num_decode_tokens(self) -> int:
        return self.num_decode_seqs
