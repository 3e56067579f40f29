"""Torch reference of every operator: the CPU path and the oracle for the GPU kernels."""

from __future__ import annotations

import torch
import torch.nn.functional as F

from kernels.metadata import AttentionMetadata


def linear(
    x: torch.Tensor,
    weight: torch.Tensor,
    bias: torch.Tensor | None = None,
    out: torch.Tensor | None = None,
) -> torch.Tensor:
    """x [T, K] @ weight[N, K].T (+ bias [N]) -> [T, N]; written straight into ``out`` (a
    contiguous [T, N] of x's dtype) when given, which is returned."""
    if out is None:
        return F.linear(x, weight, bias)
    x2, o2 = x.reshape(-1, x.shape[-1]), out.view(-1, weight.shape[0])
    if bias is None:
        torch.mm(x2, weight.t(), out=o2)
    else:
        torch.addmm(bias, x2, weight.t(), out=o2)
    return out


def rms_norm(x: torch.Tensor, weight: torch.Tensor, eps: float) -> torch.Tensor:
    """RMSNorm over the last dim, computed in float32, returned in x's dtype."""
    xf = x.float()
    xf = xf * torch.rsqrt(xf.pow(2).mean(-1, keepdim=True) + eps)
    return weight * xf.to(x.dtype)


def add_rms_norm(
    x: torch.Tensor, residual: torch.Tensor, weight: torch.Tensor, eps: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """residual' = x + residual; returns (rms_norm(residual'), residual')."""
    summed = x + residual
    return rms_norm(summed, weight, eps), summed


def rotary(
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Rotate-half RoPE.

    q [T, Hq, D], k [T, Hk, D], positions [T], cos_sin [max_pos, D] (cos | sin halves).
    """
    half = cos_sin.shape[-1] // 2
    cs = cos_sin.index_select(0, positions.long())
    cos = cs[:, :half].unsqueeze(1)
    sin = cs[:, half:].unsqueeze(1)

    def rotate(t: torch.Tensor) -> torch.Tensor:
        tf = t.float()
        t1, t2 = tf[..., :half], tf[..., half:]
        return torch.cat([t1 * cos - t2 * sin, t2 * cos + t1 * sin], dim=-1).to(t.dtype)

    return rotate(q), rotate(k)


def silu_and_mul(x: torch.Tensor) -> torch.Tensor:
    """x [T, 2I] = gate | up -> silu(gate) * up [T, I]."""
    gate, up = x.chunk(2, dim=-1)
    return F.silu(gate) * up


FP8_MAX = 448.0  # largest finite float8 e4m3 value


def quantize_kv(x: torch.Tensor, dtype: torch.dtype, scale: float) -> torch.Tensor:
    """What a cache of ``dtype`` stores for x: x itself, or x / scale saturated to the float8
    range (the stored value times ``scale`` is what attention reads back)."""
    if dtype != torch.float8_e4m3fn:
        return x.to(dtype)
    return (x.float() / scale).clamp(-FP8_MAX, FP8_MAX).to(dtype)


def dequantize_kv(x: torch.Tensor, scale: float) -> torch.Tensor:
    """float32 values of cache entries (float8 entries times their scale)."""
    if x.dtype != torch.float8_e4m3fn:
        return x.float()
    return x.float() * scale


def store_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> None:
    """Write k, v [T, Hk, D] into caches [num_blocks, block_size, Hk, D] at flat slots [T].

    A float8 (e4m3) cache stores k / k_scale and v / v_scale, saturated to +-448."""
    for x, cache, scale in ((k, k_cache, k_scale), (v, v_cache, v_scale)):
        stored = quantize_kv(x, cache.dtype, scale)
        if cache.dtype == torch.float8_e4m3fn:  # index_copy_ has no float8 kernel: copy bytes
            cache, stored = cache.view(torch.uint8), stored.view(torch.uint8)
        cache.view(-1, *cache.shape[2:]).index_copy_(0, slot_mapping, stored)


def rotary_store_kv(
    q: torch.Tensor,
    k: torch.Tensor,
    v: torch.Tensor,
    positions: torch.Tensor,
    cos_sin: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    """``rotary`` then ``store_kv`` of the rotated k and of v in one operator: returns rotated q.

    q [T, Hq, D], k / v [T, Hk, D]; the rotated k is rounded to k's dtype before it is stored,
    so the caches hold exactly what the two separate operators write."""
    q_rot, k_rot = rotary(q, k, positions, cos_sin)
    store_kv(k_rot, v, k_cache, v_cache, slot_mapping, k_scale, v_scale)
    return q_rot


def _attend(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, blocks: torch.Tensor,
    ctx_len: int, scale: float, k_scale: float, v_scale: float,
) -> torch.Tensor:  # fmt: skip
    """q [q_len, Hq, D] at the last q_len positions of a context of ctx_len cached tokens."""
    q_len, group = q.shape[0], q.shape[1] // k_cache.shape[2]
    keys = k_cache.index_select(0, blocks).flatten(0, 1)[:ctx_len]  # [ctx, Hk, D]
    values = v_cache.index_select(0, blocks).flatten(0, 1)[:ctx_len]
    keys = dequantize_kv(keys, k_scale).repeat_interleave(group, dim=1).transpose(0, 1)
    values = dequantize_kv(values, v_scale).repeat_interleave(group, dim=1).transpose(0, 1)
    scores = torch.matmul(q.transpose(0, 1).float(), keys.transpose(1, 2)) * scale
    q_pos = torch.arange(ctx_len - q_len, ctx_len, device=q.device).unsqueeze(1)
    k_pos = torch.arange(ctx_len, device=q.device).unsqueeze(0)
    scores = scores.masked_fill(k_pos > q_pos, float("-inf"))  # [Hq, q_len, ctx]
    return torch.matmul(torch.softmax(scores, dim=-1), values).transpose(0, 1).to(q.dtype)


def paged_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    meta: AttentionMetadata,
    scale: float,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> torch.Tensor:
    """Causal attention of q [T, Hq, D] over each sequence's paged KV; GQA by head grouping.

    Reads the batch the way the GPU kernels do (the decodes-first contract): sequence ``i`` below
    ``num_decode_seqs`` is query row ``i`` alone, the others own their ``cu_seqlens_q`` rows.
    Float8 caches are read as stored value x ``k_scale`` / ``v_scale``.
    """
    out = torch.empty_like(q)
    block_size = k_cache.shape[1]
    cu = meta.cu_seqlens_q_host or tuple(meta.cu_seqlens_q.tolist())
    ctx = meta.context_lens_host or tuple(meta.context_lens.tolist())
    for i, ctx_len in enumerate(ctx):
        start, end = (i, i + 1) if i < meta.num_decode_seqs else (cu[i], cu[i + 1])
        blocks = meta.block_tables[i, : (ctx_len + block_size - 1) // block_size].long()
        out[start:end] = _attend(
            q[start:end], k_cache, v_cache, blocks, ctx_len, scale, k_scale, v_scale
        )
    return out


def argmax(logits: torch.Tensor) -> torch.Tensor:
    """logits [R, V] -> int64 [R]: the first index of each row's largest value (greedy choice)."""
    return logits.argmax(dim=-1)


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    top_k: torch.Tensor,
    min_p: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """Pick one token per row of logits [B, V] (float32).

    Rows with temperature 0 take the argmax. Others are scaled by temperature, filtered by top-k
    (top_k <= 0 or >= V disables it), top-p and min-p, and sampled by the exponential race
    ``argmax(p / noise)`` with ``noise`` [B, V] ~ Exp(1), which equals sampling from p; the caller
    makes the noise from each request's seed so the draw does not depend on the rest of the batch.
    """
    greedy = temperature == 0
    scaled = logits / torch.where(greedy, torch.ones_like(temperature), temperature).unsqueeze(1)
    probs = torch.softmax(scaled, dim=-1)
    sorted_probs, sorted_idx = probs.sort(dim=-1, descending=True)
    vocab = logits.shape[-1]
    ranks = torch.arange(vocab, device=logits.device).unsqueeze(0)
    k = torch.where(top_k <= 0, torch.full_like(top_k, vocab), top_k.clamp(max=vocab))
    drop = ranks >= k.unsqueeze(1)
    cum_before = sorted_probs.cumsum(dim=-1) - sorted_probs
    drop |= cum_before >= top_p.unsqueeze(1)
    drop |= sorted_probs < (min_p * sorted_probs[:, 0]).unsqueeze(1)
    drop[:, 0] = False
    sorted_probs = sorted_probs.masked_fill(drop, 0.0)
    filtered = torch.zeros_like(probs).scatter_(1, sorted_idx, sorted_probs)
    sampled = (filtered / noise).argmax(dim=-1)
    return torch.where(greedy, logits.argmax(dim=-1), sampled)
