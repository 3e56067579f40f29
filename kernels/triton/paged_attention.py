"""One entry point for a mixed batch: decodes first (split-KV decode kernel), then extends."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import replace
from fractions import Fraction
from typing import Any, Literal

import torch

from kernels.decode_choice import DecodeChoice, contexts_uniform
from kernels.metadata import AttentionMetadata
from kernels.triton.decode_attention import DecodeConfig, decode_attention
from kernels.triton.decode_attention_tma import decode_attention_tma, tma_supported, tuned_config
from kernels.triton.extend_attention import extend_attention
from kernels.triton.paged_common import device_sm_count

# DecodeChoice.whole_gpu "auto", per KV cache: 16-bit pages keep the gather kernel (whole-GPU TMA
# on a persistent grid was measured slower on mixed-length workloads, docs/performance.md);
# float8 pages run the TMA kernel with one program per item, with float16 dots 1.14-1.44x the
# gather kernel's speed on uniform and on ragged (64..3,072-token) batches of 512 and 1,024
# decodes, where the persistent TMA grid lost to the gather kernel on the ragged 512 (H200,
# bench/fp8_decode_ragged.py, bench/results/2026-11-30-h200-fp8-decode-ragged.json)
AUTO_WHOLE_GPU_FP8 = "tma-items"
# The gather kernel on the whole GPU over 16-bit pages of head dims up to 128: 128-token KV tiles
# in two stages. Against the earlier 64-token tiles in four stages it read the KV cache 1.3-6.9%
# faster in all eight cases measured (256 decodes; 32 q heads over 8 and over 4 KV heads; mean
# contexts 800 and 1,536, uniform and ragged; H200, bench/decode_gqa.py,
# bench/results/2026-11-30-h200-decode-gqa.json). Float8 pages and wider heads keep DecodeConfig().
WHOLE_GPU_GATHER = DecodeConfig(block_n=128, num_stages=2)
# DecodeChoice.whole_gpu "by-context" over 16-bit pages: this kernel for decode batches whose
# contexts are near-uniform (within the choice's uniform_ratio, kernels.decode_choice), the gather
# kernel for the rest and where the batch's lengths are not known on the host
BY_CONTEXT_UNIFORM = "tma-items"

DecodeKernel = Callable[..., None]


def whole_gpu_kernel(
    choice: DecodeChoice, cache_dtype: torch.dtype, tma_ok: bool, uniform: bool | None = None
) -> str:
    """The decode kernel on the whole GPU: "gather", "tma" or "tma-items" (TMA where supported).
    ``uniform``: whether the decode rows' contexts are near-uniform (None: not known), which
    "by-context" picks by over 16-bit caches; over float8 ones it is "auto"."""
    kernel = choice.whole_gpu
    fp8 = cache_dtype == torch.float8_e4m3fn
    if kernel == "auto" or (kernel == "by-context" and fp8):
        kernel = AUTO_WHOLE_GPU_FP8 if fp8 else "gather"
    elif kernel == "by-context":
        kernel = BY_CONTEXT_UNIFORM if uniform else "gather"
    return kernel if tma_ok or kernel.startswith("gather") else "gather"


def gather_config(k_cache: torch.Tensor, dot: Literal["q", "fp16"]) -> DecodeConfig:
    """The gather kernel's configuration on the whole GPU (WHOLE_GPU_GATHER where measured)."""
    if k_cache.dtype != torch.float8_e4m3fn and k_cache.shape[-1] <= 128:
        return replace(WHOLE_GPU_GATHER, fp8_dot=dot)
    return DecodeConfig(fp8_dot=dot)


def picks_by_context(choice: DecodeChoice, q_dtype: torch.dtype, k_cache: torch.Tensor) -> bool:
    """Whether ``choice``'s whole-GPU kernel for queries of ``q_dtype`` over ``k_cache`` depends on
    how uniform a decode batch's contexts are ("by-context" over a 16-bit cache TMA can read)."""
    if choice.whole_gpu != "by-context" or k_cache.dtype == torch.float8_e4m3fn:
        return False
    tma_ok = tma_supported(k_cache.new_empty(0, dtype=q_dtype), k_cache)
    return whole_gpu_kernel(choice, k_cache.dtype, tma_ok, True) != whole_gpu_kernel(
        choice, k_cache.dtype, tma_ok, False
    )


def decode_contexts_uniform(meta: AttentionMetadata, ratio: Fraction) -> bool | None:
    """Whether the batch's decode rows have near-uniform contexts (max <= ``ratio`` x mean): as a
    CUDA graph's metadata fixes it, else from the host lengths (None without them; never read
    from the device)."""
    if meta.decode_contexts_uniform is not None:
        return meta.decode_contexts_uniform
    lens = meta.context_lens_host[: meta.num_decode_seqs]
    return contexts_uniform(lens, ratio) if lens else None


def decode_launch(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    num_sms: int | None,
    decode_config: DecodeConfig | None,
    choice: DecodeChoice,
    uniform: bool | None = None,
) -> tuple[DecodeKernel, DecodeConfig, int | None]:
    """(kernel, configuration, SM budget of its grid) of the decode part. An explicit
    ``decode_config`` is run as given; an SM budget below the device's (a pipeline partition)
    gets the TMA kernel in its measured configuration where supported; the whole GPU the kernel
    ``choice`` names (for "by-context", as ``uniform`` says). ``choice.fp8_dot`` sets the dots
    over a float8 cache unless a config is given.
    """
    tma = tma_supported(q, k_cache)
    if decode_config is not None:
        return (decode_attention_tma if decode_config.tma and tma else decode_attention,
                decode_config, num_sms)  # fmt: skip
    page = k_cache.shape[1]
    dot: Literal["q", "fp16"] = "q" if choice.fp8_dot == "q" else "fp16"  # validated choices
    device_sms = device_sm_count(q.device)
    if num_sms and num_sms < device_sms:
        if tma:
            return decode_attention_tma, replace(tuned_config(num_sms, page), fp8_dot=dot), num_sms
        return decode_attention, DecodeConfig(fp8_dot=dot), num_sms
    kernel = whole_gpu_kernel(choice, k_cache.dtype, tma, uniform)
    if kernel == "gather":
        return decode_attention, gather_config(k_cache, dot), num_sms
    if kernel == "gather-64":
        return decode_attention, DecodeConfig(fp8_dot=dot), num_sms
    cfg = replace(tuned_config(device_sms, page), fp8_dot=dot)
    return decode_attention_tma, cfg, device_sms if kernel == "tma" else None


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
    choice: DecodeChoice | None = None,
    uniform: bool | None = None,
    decode_order: torch.Tensor | None = None,
    extend: bool = True,
) -> torch.Tensor:
    """Causal attention of q [T, Hq, D] over paged caches [blocks, page, Hk, D] -> [T, Hq, D].

    ``num_sms`` runs the decode part on a persistent grid sized to that SM budget;
    ``decode_config`` overrides its tile / pipeline configuration. Without one, decode attention on
    part of a Hopper GPU (``num_sms`` below the device's) runs the TMA kernel in the configuration
    measured best for that budget; on the whole GPU the kernel ``choice`` names ("auto": the
    gather kernel over 16-bit caches, whose one-program-per-item grid balances mixed context
    lengths, and ``AUTO_WHOLE_GPU_FP8`` over float8 ones; see docs/performance.md). A float8
    (e4m3) cache is read by every kernel as stored value x ``k_scale`` / ``v_scale``, with K/V
    widened to ``choice.fp8_dot`` (float16 by default) for the dots. "by-context" picks by
    ``uniform`` (the decode rows' contexts near-uniform) or, without it, by
    ``decode_contexts_uniform(meta, choice.uniform_ratio)``. ``decode_order`` (int32, a
    permutation of the decode rows) is the order their work items are handed out in.
    ``extend=False`` runs the decode rows alone: the rows past them (the extend sequences' queries)
    are left unwritten, for another kernel to fill (the "flashinfer-prefill" backend's).
    """
    assert q.stride(-1) == 1 and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert q.shape[-1] & (q.shape[-1] - 1) == 0, "head_dim must be a power of two"
    choice = choice or DecodeChoice()
    out = torch.empty_like(q)
    num_decode = meta.num_decode_seqs
    if num_decode > 0:
        if uniform is None and choice.whole_gpu == "by-context":
            uniform = decode_contexts_uniform(meta, choice.uniform_ratio)
        decode, cfg, sms = decode_launch(q, k_cache, num_sms, decode_config, choice, uniform)
        args: tuple[Any, ...] = (
            q[:num_decode], k_cache, v_cache, meta.block_tables[:num_decode],
            meta.context_lens[:num_decode], meta.max_context_len, scale, out[:num_decode],
        )  # fmt: skip
        decode(*args, num_sms=sms, config=cfg, k_scale=k_scale, v_scale=v_scale,
               order=decode_order)  # fmt: skip
    if not extend:
        return out
    extend_attention(
        q, k_cache, v_cache, meta.block_tables, meta.context_lens, meta.cu_seqlens_q,
        first_seq=num_decode,
        num_seqs=meta.num_seqs - num_decode,
        max_query_len=meta.max_query_len,
        scale=scale,
        out=out,
        k_scale=k_scale,
        v_scale=v_scale,
        fp8_dot=choice.fp8_dot,
    )  # fmt: skip
    return out
