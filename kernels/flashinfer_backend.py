"""FlashInfer's paged decode / prefill attention (priority 20); importing fails without flashinfer.

A batch is planned once (on the host, from the metadata's host tuples) and the plan is reused for
every layer that sees the same :class:`AttentionMetadata` object. Decodes go to the batch-decode
wrapper, extends to the causal batch-prefill wrapper; FlashInfer aligns a chunk's queries to the
end of its KV, which is the metadata's convention. Only fp16 / bf16 run here; other dtypes take
the torch reference.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flashinfer
import torch

from kernels import reference
from kernels.metadata import AttentionMetadata
from kernels.registry import register

PRIORITY = 20
WORKSPACE_BYTES = 128 << 20


@dataclass
class _Plan:
    meta: AttentionMetadata  # the batch this plan was made for (compared by identity)
    key: tuple[object, ...]  # heads, head dim, dtypes, scale
    decode: flashinfer.BatchDecodeWithPagedKVCacheWrapper | None
    prefill: flashinfer.BatchPrefillWithPagedKVCacheWrapper | None


_wrappers: dict[tuple[object, ...], Any] = {}
_last_plan: dict[torch.device, _Plan] = {}


def _wrapper(kind: str, device: torch.device, tensor_cores: bool) -> Any:
    key = (kind, device, tensor_cores)
    if key not in _wrappers:
        workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        if kind == "decode":
            _wrappers[key] = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                workspace, "NHD", use_tensor_cores=tensor_cores
            )
        else:
            _wrappers[key] = flashinfer.BatchPrefillWithPagedKVCacheWrapper(workspace, "NHD")
    return _wrappers[key]


def _pages(
    meta: AttentionMetadata, first: int, last: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(indptr [n+1], page ids [pages], last page lengths [n]) of sequences first..last-1."""
    ctx = meta.context_lens_host or tuple(meta.context_lens.tolist())
    counts = [(c + meta.block_size - 1) // meta.block_size for c in ctx[first:last]]
    indptr = torch.tensor([0, *counts], dtype=torch.int32).cumsum(0, dtype=torch.int32)
    rows = torch.repeat_interleave(torch.arange(first, last), torch.tensor(counts))
    cols = torch.cat([torch.arange(n) for n in counts]) if counts else torch.zeros(0)
    device = meta.block_tables.device
    page_ids = meta.block_tables[rows.to(device), cols.long().to(device)]  # no host sync
    last_len = torch.tensor([c - (n - 1) * meta.block_size for c, n in zip(ctx[first:last], counts,
                                                                            strict=True)],
                            dtype=torch.int32)  # fmt: skip
    return indptr, page_ids, last_len


def _plan(q: torch.Tensor, k_cache: torch.Tensor, meta: AttentionMetadata, scale: float) -> _Plan:
    num_heads, head_dim = q.shape[1], q.shape[2]
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    key = (num_heads, num_kv_heads, head_dim, page, q.dtype, k_cache.dtype, scale)
    cached = _last_plan.get(q.device)
    if cached is not None and cached.meta is meta and cached.key == key:
        return cached
    nd, n = meta.num_decode_seqs, meta.num_seqs
    common = {"q_data_type": q.dtype, "kv_data_type": k_cache.dtype, "sm_scale": scale}
    decode = prefill = None
    if nd > 0:
        decode = _wrapper("decode", q.device, num_heads // num_kv_heads >= 4)
        decode.plan(*_pages(meta, 0, nd), num_heads, num_kv_heads, head_dim, page, **common)
    if n > nd:
        cu = meta.cu_seqlens_q_host or tuple(meta.cu_seqlens_q.tolist())
        qo_indptr = torch.tensor([c - cu[nd] for c in cu[nd:]], dtype=torch.int32)
        prefill = _wrapper("prefill", q.device, False)
        prefill.plan(qo_indptr, *_pages(meta, nd, n), num_heads, num_kv_heads, head_dim, page,
                     causal=True, **common)  # fmt: skip
    plan = _Plan(meta, key, decode, prefill)
    _last_plan[q.device] = plan
    return plan


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
) -> torch.Tensor:
    """Causal attention of q [T, Hq, D] over paged caches [blocks, page, Hk, D] -> [T, Hq, D]."""
    if q.dtype not in (torch.float16, torch.bfloat16):
        return reference.paged_attention(q, k_cache, v_cache, meta, scale)
    q = q.contiguous()
    plan = _plan(q, k_cache, meta, scale)
    out = torch.empty_like(q)
    nd = meta.num_decode_seqs
    if plan.decode is not None:
        plan.decode.run(q[:nd], (k_cache, v_cache), out=out[:nd])
    if plan.prefill is not None:
        plan.prefill.run(q[nd:], (k_cache, v_cache), out=out[nd:])
    return out


def available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()


register("paged_attention", "flashinfer", paged_attention, priority=PRIORITY, available=available)
