"""Plain data that attention kernels read: where each sequence's queries and KV blocks are."""

from __future__ import annotations

import itertools
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class AttentionMetadata:
    """Describes one flat token batch of ``B`` sequences for paged attention.

    The batch contract: sequences are ordered decodes first (one query token each), then prefill /
    extend chunks (which may also have one token). Decode kernels read query row ``i`` as sequence
    ``i``'s only query for ``i < num_decode_seqs``; a batch that breaks this is refused here (when
    the host tuples are given, as the model runner gives them), on every device.
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
    # whether the decode rows' contexts are near-uniform (kernels.decode_choice.contexts_uniform),
    # fixed by a decode CUDA graph captured for one of the two cases; None: decided from
    # context_lens_host where given. Only the "by-context" decode choice reads it.
    decode_contexts_uniform: bool | None = None

    def __post_init__(self) -> None:
        cu, nd = self.cu_seqlens_q_host, self.num_decode_seqs
        if not cu:
            return  # device-only metadata: a CUDA-graph bucket, decode-only by construction
        if not 0 <= nd <= len(cu) - 1 or cu[nd] != nd:
            rows = [b - a for a, b in itertools.pairwise(cu)]
            raise ValueError(
                f"batch breaks the decodes-first contract: num_decode_seqs={nd} but the query "
                f"rows per sequence are {rows[:8]}{'...' if len(rows) > 8 else ''}"
            )

    @property
    def num_seqs(self) -> int:
        return int(self.context_lens.shape[0])

    @property
    def num_decode_tokens(self) -> int:
        return self.num_decode_seqs
