"""Synthetic batches for profiling: decode sequences and prefill chunks over randomly placed
KV blocks of an engine's cache, and a layer's activations just before one of its operations."""

from __future__ import annotations

import dataclasses
from typing import Any

import torch

from kernels import AttentionMetadata
from runtime.model.llama import Activations, ForwardContext

KVCaches = list[tuple[torch.Tensor, torch.Tensor]]


def shared_kv_caches(engine: Any, num_bytes: int, dtype: torch.dtype | None = None) -> KVCaches:
    """One K and one V buffer of ``num_bytes`` in all, shared by every layer: timing needs one
    layer's cache at a time, so a profile reaches contexts 32 layers' caches could not hold.
    ``dtype``: the buffer's (default the engine cache's; the kernels read float8 caches too)."""
    k0 = engine.runner.kv_caches[0][0]  # [blocks, block_size, kv_heads, head_dim]
    dtype = dtype or k0.dtype
    per_block = 2 * k0[0].numel() * dtype.itemsize
    # at most 2^31 - 1 elements per tensor, as a real layer's cache has (the H200 runs with
    # larger shared buffers faulted; docs/performance.md)
    blocks = min(num_bytes // per_block, (2**31 - 1) // k0[0].numel())
    shape = (max(2, blocks), *k0.shape[1:])
    k = _random(shape, dtype, k0.device)
    v = _random(shape, dtype, k0.device)
    return [(k, v)] * len(engine.runner.kv_caches)


def _random(shape: tuple[int, ...], dtype: torch.dtype, device: torch.device) -> torch.Tensor:
    """Normal values (not zeros: a GPU can run faster on zeros than on data), filled in chunks
    of blocks so a float8 buffer needs no full-size 16-bit copy."""
    out = torch.empty(shape, dtype=dtype, device=device)
    step = max(1, (64 << 20) // max(1, out[0].numel()))
    for i in range(0, shape[0], step):
        part = out[i : i + step]
        part.copy_(torch.randn(part.shape, dtype=torch.float32, device=device).to(dtype))
    return out


def make_batch(
    engine: Any,
    kv_caches: KVCaches,
    decodes: int,
    context: int,
    chunks: list[int],
    seed: int = 0,
    reuse_blocks: bool = False,
) -> tuple[torch.Tensor, ForwardContext]:
    """input_ids and a ForwardContext over ``kv_caches``: ``decodes`` sequences at context
    ``context`` (one query row each), then one prefill chunk per entry of ``chunks`` (that many
    rows, ending at context ``max(context, rows)``). ValueError when the cache cannot hold them,
    unless ``reuse_blocks``: then sequences share blocks (timing only: attention still reads
    every block of every sequence, the shared ones from a buffer far larger than the L2)."""
    g = torch.Generator().manual_seed(seed)
    lens = [context] * decodes + [max(context, c) for c in chunks]
    q_lens = [1] * decodes + list(chunks)
    positions, meta = paged_batch(engine, kv_caches, lens, q_lens, decodes, g, reuse_blocks)
    ids = torch.randint(0, engine.model_config.vocab_size, (len(positions),), generator=g)
    return ids.to(engine.device), ForwardContext(positions, meta, kv_caches, engine.ops)


def paged_batch(
    engine: Any,
    kv_caches: KVCaches,
    lens: list[int],
    q_lens: list[int],
    decodes: int,
    g: torch.Generator,
    reuse_blocks: bool = False,
) -> tuple[torch.Tensor, AttentionMetadata]:
    """Positions and metadata of sequences at contexts ``lens`` whose last ``q_lens`` tokens are
    the query rows (the first ``decodes`` are decodes), over KV blocks drawn at random (with
    ``g``) from ``kv_caches``. ValueError when the cache cannot hold them, unless
    ``reuse_blocks``: then the random order of all blocks repeats (no sequence longer than the
    cache gets a block twice)."""
    bs, dev = engine.config.block_size, engine.device
    num_blocks = kv_caches[0][0].shape[0] - 1  # the last one stays unused
    need = [-(-n // bs) for n in lens]
    if sum(need) > num_blocks and not (reuse_blocks and max(need) <= num_blocks):
        raise ValueError(f"{sum(need)} KV blocks needed, the cache has {num_blocks}")
    order = torch.randperm(num_blocks, generator=g).tolist()
    perm = (order * -(-sum(need) // num_blocks))[: sum(need)]
    tables, slots, positions, at = [], [], [], 0
    width = max(need)
    for n, q, w in zip(lens, q_lens, need, strict=True):
        t = perm[at : at + w]
        at += w
        tables.append(t + [0] * (width - w))
        for p in range(n - q, n):
            positions.append(p)
            slots.append(t[p // bs] * bs + p % bs)
    cu = [0]
    for q in q_lens:
        cu.append(cu[-1] + q)
    meta = AttentionMetadata(
        cu_seqlens_q=torch.tensor(cu, dtype=torch.int32, device=dev),
        context_lens=torch.tensor(lens, dtype=torch.int32, device=dev),
        block_tables=torch.tensor(tables, dtype=torch.int32, device=dev),
        slot_mapping=torch.tensor(slots, dtype=torch.int64, device=dev),
        num_decode_seqs=decodes,
        max_query_len=max(q_lens), max_context_len=max(lens), block_size=bs,
        cu_seqlens_q_host=tuple(cu), context_lens_host=tuple(lens),
    )  # fmt: skip
    return torch.tensor(positions, dtype=torch.int64, device=dev), meta


@torch.inference_mode()
def activations_per_op(
    model: Any, ids: torch.Tensor, ctx: ForwardContext, layer: int
) -> list[Activations]:
    """The activations each operation of ``model.layers[layer]`` reads (earlier layers and
    operations run once; each entry is a snapshot of the tensors as that operation finds them;
    shapes are exact, values may have been updated in place by later operations)."""
    x = Activations(hidden=model.embed_tokens.index_select(0, ids))
    layers = model.operations()
    for ops in layers[:layer]:
        for op in ops:
            op.run(x, ctx)
    out = []
    for op in layers[layer]:
        out.append(copy_of(x))
        op.run(x, ctx)
    return out


def copy_of(x: Activations) -> Activations:
    """A fresh holder of the same tensors: every operation assigns its outputs to fields, so
    running it on a copy leaves ``x`` as it was."""
    return dataclasses.replace(x)
