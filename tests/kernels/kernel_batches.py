"""Random paged-attention batches for kernel tests: dense K/V per sequence scattered into pages."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels.metadata import AttentionMetadata


@dataclass(frozen=True)
class PagedBatch:
    q: torch.Tensor  # [T, Hq, D]
    k_cache: torch.Tensor  # [num_blocks, block_size, Hk, D]
    v_cache: torch.Tensor
    meta: AttentionMetadata
    dense_k: list[torch.Tensor]  # per sequence [ctx, Hk, D], in position order
    dense_v: list[torch.Tensor]


def _block_tables(ctx_lens: list[int], block_size: int, gen: torch.Generator) -> torch.Tensor:
    """[B, max_blocks + 1] int32 of distinct, randomly permuted block ids; unused entries 0."""
    counts = [(c + block_size - 1) // block_size for c in ctx_lens]
    ids = torch.randperm(sum(counts) + 3, generator=gen)[: sum(counts)] + 1
    table = torch.zeros(len(ctx_lens), max(counts) + 1, dtype=torch.int32)
    start = 0
    for i, n in enumerate(counts):
        table[i, :n] = ids[start : start + n]
        start += n
    return table


def _slots(table: torch.Tensor, positions: list[int], seq: int, block_size: int) -> list[int]:
    return [int(table[seq, p // block_size]) * block_size + p % block_size for p in positions]


def make_paged_batch(
    q_lens: list[int],
    ctx_lens: list[int],
    num_decode_seqs: int,
    num_q_heads: int,
    num_kv_heads: int,
    head_dim: int,
    block_size: int,
    dtype: torch.dtype,
    device: str | torch.device,
    seed: int,
) -> PagedBatch:
    """Sequences decodes first; sequence i has q_lens[i] new tokens among ctx_lens[i] cached."""
    gen = torch.Generator().manual_seed(seed)
    table = _block_tables(ctx_lens, block_size, gen)
    num_blocks = int(table.max()) + 4
    shape = (num_blocks, block_size, num_kv_heads, head_dim)
    k_cache = torch.randn(shape, generator=gen).to(dtype)  # garbage outside the sequences' slots
    v_cache = torch.randn(shape, generator=gen).to(dtype)
    dense_k, dense_v, slot_mapping = [], [], []
    for i, (q_len, ctx) in enumerate(zip(q_lens, ctx_lens, strict=True)):
        keys = torch.randn(ctx, num_kv_heads, head_dim, generator=gen).to(dtype)
        values = torch.randn(ctx, num_kv_heads, head_dim, generator=gen).to(dtype)
        slots = torch.tensor(_slots(table, list(range(ctx)), i, block_size))
        k_cache.view(-1, num_kv_heads, head_dim)[slots] = keys
        v_cache.view(-1, num_kv_heads, head_dim)[slots] = values
        dense_k.append(keys.to(device))
        dense_v.append(values.to(device))
        slot_mapping += slots[ctx - q_len :].tolist()
    cu = [0]
    for q_len in q_lens:
        cu.append(cu[-1] + q_len)
    q = torch.randn(cu[-1], num_q_heads, head_dim, generator=gen).to(dtype)
    meta = AttentionMetadata(
        cu_seqlens_q=torch.tensor(cu, dtype=torch.int32, device=device),
        context_lens=torch.tensor(ctx_lens, dtype=torch.int32, device=device),
        block_tables=table.to(device),
        slot_mapping=torch.tensor(slot_mapping, dtype=torch.int64, device=device),
        num_decode_seqs=num_decode_seqs,
        max_query_len=max(q_lens),
        max_context_len=max(ctx_lens),
        block_size=block_size,
        cu_seqlens_q_host=tuple(cu),
        context_lens_host=tuple(ctx_lens),
    )
    return PagedBatch(q.to(device), k_cache.to(device), v_cache.to(device), meta, dense_k, dense_v)


def dense_attention(batch: PagedBatch, scale: float) -> torch.Tensor:
    """Causal attention from the dense per-sequence K/V (float64), independent of the pages."""
    meta = batch.meta
    out = torch.empty(batch.q.shape, dtype=torch.float64, device=batch.q.device)
    group = batch.q.shape[1] // batch.k_cache.shape[2]
    for i, ctx in enumerate(meta.context_lens_host):
        start, end = meta.cu_seqlens_q_host[i], meta.cu_seqlens_q_host[i + 1]
        q = batch.q[start:end].double().transpose(0, 1)  # [Hq, q_len, D]
        k = batch.dense_k[i].double().repeat_interleave(group, 1).transpose(0, 1)  # [Hq, ctx, D]
        v = batch.dense_v[i].double().repeat_interleave(group, 1).transpose(0, 1)
        q_pos = torch.arange(ctx - (end - start), ctx, device=q.device)[:, None]
        mask = torch.arange(ctx, device=q.device)[None, :] <= q_pos  # [q_len, ctx]
        attn = torch.nn.functional.scaled_dot_product_attention(
            q, k, v, attn_mask=mask, scale=scale
        )
        out[start:end] = attn.transpose(0, 1)
    return out


def relative_error(out: torch.Tensor, ref: torch.Tensor) -> float:
    return float((out.double() - ref.double()).norm() / ref.double().norm())
