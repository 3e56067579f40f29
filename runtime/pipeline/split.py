"""Nano-batches of a real batch: row ranges snapped to sequences, sliced metadata and tensors."""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Sequence

import torch

from kernels import AttentionMetadata
from runtime.model.llama import Activations, ForwardContext

Rows = tuple[int, int]  # [start, end) of the flat token batch


def seq_starts(meta: AttentionMetadata, num_tokens: int) -> list[int]:
    """Row where each sequence starts, plus num_tokens (decodes: one row each)."""
    if meta.cu_seqlens_q_host:
        return list(meta.cu_seqlens_q_host)
    assert meta.num_decode_seqs == meta.num_seqs, "host cu_seqlens needed for prefill batches"
    return list(range(num_tokens + 1))


def snap_bounds(sizes: Sequence[int], starts: Sequence[int]) -> list[Rows]:
    """Scale the plan's sizes to the batch and move each cut to the nearest sequence start.

    Monotonic: cuts that are ordered in the plan stay ordered, so rows that are disjoint in the
    plan stay disjoint here. Nano-batches may come out empty (a batch of one sequence has one
    non-empty nano-batch); they keep their index and the executor skips them."""
    total, reference = starts[-1], sum(sizes)
    cuts, acc = [0], 0
    for s in sizes[:-1]:
        acc += s
        target = acc * total / reference
        nearest = min(starts, key=lambda x: (abs(x - target), x))
        cuts.append(max(nearest, cuts[-1]))
    cuts.append(total)
    return list(itertools.pairwise(cuts))


def slice_metadata(meta: AttentionMetadata, starts: Sequence[int], rows: Rows) -> AttentionMetadata:
    s0, s1 = starts.index(rows[0]), starts.index(rows[1])
    host_cu = tuple(c - rows[0] for c in meta.cu_seqlens_q_host[s0 : s1 + 1])
    host_ctx = meta.context_lens_host[s0:s1]
    q_lens = [b - a for a, b in zip(starts[s0:s1], starts[s0 + 1 : s1 + 1], strict=True)]
    return AttentionMetadata(
        cu_seqlens_q=meta.cu_seqlens_q[s0 : s1 + 1] - rows[0],
        context_lens=meta.context_lens[s0:s1],
        block_tables=meta.block_tables[s0:s1],
        slot_mapping=meta.slot_mapping[rows[0] : rows[1]],
        num_decode_seqs=max(0, min(meta.num_decode_seqs, s1) - s0),
        max_query_len=max(q_lens),
        max_context_len=max(host_ctx) if host_ctx else meta.max_context_len,
        block_size=meta.block_size,
        cu_seqlens_q_host=host_cu,
        context_lens_host=host_ctx,
        decode_contexts_uniform=meta.decode_contexts_uniform,  # the whole batch's (a graph's)
    )


def slice_context(
    ctx: ForwardContext, starts: Sequence[int], rows: Rows, ops: object | None = None
) -> ForwardContext:
    return ForwardContext(
        positions=ctx.positions[rows[0] : rows[1]],
        attn=slice_metadata(ctx.attn, starts, rows),
        kv_caches=ctx.kv_caches,
        ops=ctx.ops if ops is None else ops,  # type: ignore[arg-type]
        op_hook=ctx.op_hook,
        network_group=ctx.network_group,
    )


FIELDS = [f.name for f in dataclasses.fields(Activations)]


def tensors(x: Activations) -> list[torch.Tensor]:
    return [t for t in (getattr(x, f) for f in FIELDS) if t is not None]


def assemble(pieces: Sequence[tuple[Rows, Activations]], rows: Rows) -> Activations:
    """The activations of ``rows`` from producer pieces that cover them (views when one piece
    covers them, else a concatenation of the slices)."""
    parts = [(r, x) for r, x in pieces if r[0] < rows[1] and rows[0] < r[1]]
    if len(parts) == 1 and parts[0][0] == rows:
        return parts[0][1]
    out = {}
    for f in FIELDS:
        vals = [getattr(x, f) for _, x in parts]
        if any(v is None for v in vals):
            continue
        cuts = [(max(r[0], rows[0]) - r[0], min(r[1], rows[1]) - r[0]) for r, _ in parts]
        sl = [v[a:b] for v, (a, b) in zip(vals, cuts, strict=True)]
        out[f] = sl[0] if len(sl) == 1 else torch.cat(sl)
    return Activations(**out)
