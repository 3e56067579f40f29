"""One entry point for a mixed batch: decodes first (split-KV decode kernel), then extends."""

from __future__ import annotations

import torch

from kernels.metadata import AttentionMetadata
from kernels.triton.decode_attention import DecodeConfig, decode_attention
from kernels.triton.decode_attention_tma import decode_attention_tma, tma_supported, tuned_config
from kernels.triton.extend_attention import extend_attention
from kernels.triton.paged_common import device_sm_count


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    num_sms: int | None = None,
    decode_config: DecodeConfig | None = None,
) -> torch.Tensor:
    """Causal attention of q [T, Hq, D] over paged caches [blocks, page, Hk, D] -> [T, Hq, D].

    ``num_sms`` runs the decode part on a persistent grid sized to that SM budget;
    ``decode_config`` overrides its tile / pipeline configuration. Without one, decode attention on
    part of a Hopper GPU (``num_sms`` below the device's) with a 16-bit cache runs the TMA kernel in
    the configuration measured best for that budget; on the whole GPU it runs the gather kernel,
    whose one-program-per-item grid balances mixed context lengths (see docs/performance.md).
    A float8 (e4m3) cache is read by every kernel as stored value x ``k_scale`` / ``v_scale``.
    """
    assert q.stride(-1) == 1 and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert q.shape[-1] & (q.shape[-1] - 1) == 0, "head_dim must be a power of two"
    out = torch.empty_like(q)
    num_decode = meta.num_decode_seqs
    if num_decode > 0:
        tma = tma_supported(q, k_cache)
        if decode_config is None and tma and num_sms and num_sms < device_sm_count(q.device):
            decode_config = tuned_config(num_sms, k_cache.shape[1])
        use_tma = decode_config is not None and decode_config.tma and tma
        decode = decode_attention_tma if use_tma else decode_attention
        decode(
            q[:num_decode], k_cache, v_cache, meta.block_tables[:num_decode],
            meta.context_lens[:num_decode], meta.max_context_len, scale, out[:num_decode],
            num_sms=num_sms, config=decode_config, k_scale=k_scale, v_scale=v_scale,
        )  # fmt: skip
    extend_attention(
        q, k_cache, v_cache, meta.block_tables, meta.context_lens, meta.cu_seqlens_q,
        first_seq=num_decode,
        num_seqs=meta.num_seqs - num_decode,
        max_query_len=meta.max_query_len,
        scale=scale,
        out=out,
        k_scale=k_scale,
        v_scale=v_scale,
    )  # fmt: skip
    return out
