"""Rotate-half RoPE from a precomputed cos|sin cache (llama3 scaling lives in the cache)."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def _rotate_heads(
    src_ptr,
    dst_ptr,
    stride_st,
    stride_sh,
    stride_dt,
    stride_dh,
    token,
    num_heads,
    cos,
    sin,
    HALF: tl.constexpr,
    HALF_PAD: tl.constexpr,
    HEADS_PAD: tl.constexpr,
):
    heads = tl.arange(0, HEADS_PAD)[:, None]  # [H, 1]
    cols = tl.arange(0, HALF_PAD)[None, :]  # [1, D/2]
    mask = (heads < num_heads) & (cols < HALF)
    src = src_ptr + token * stride_st + heads * stride_sh + cols
    x1 = tl.load(src, mask=mask, other=0.0)
    x2 = tl.load(src + HALF, mask=mask, other=0.0)
    a = x1.to(tl.float32)
    b = x2.to(tl.float32)
    dst = dst_ptr + token * stride_dt + heads * stride_dh + cols
    tl.store(dst, (a * cos - b * sin).to(x1.dtype), mask=mask)
    tl.store(dst + HALF, (b * cos + a * sin).to(x1.dtype), mask=mask)


@triton.jit
def _cos_sin(cos_sin_ptr, pos, stride_cs, HALF: tl.constexpr, HALF_PAD: tl.constexpr):
    """Position ``pos``'s cos and sin halves as float32 rows [1, D/2] (zero past HALF)."""
    cols = tl.arange(0, HALF_PAD)
    cmask = cols < HALF
    cos = tl.load(cos_sin_ptr + pos * stride_cs + cols, mask=cmask, other=0.0).to(tl.float32)
    sin = tl.load(cos_sin_ptr + pos * stride_cs + HALF + cols, mask=cmask, other=0.0)
    return cos[None, :], sin.to(tl.float32)[None, :]


@triton.jit
def rotary_kernel(
    q_ptr,
    k_ptr,
    q_out_ptr,
    k_out_ptr,
    pos_ptr,
    cos_sin_ptr,
    stride_qt,
    stride_qh,
    stride_kt,
    stride_kh,
    stride_qot,
    stride_qoh,
    stride_kot,
    stride_koh,
    stride_cs,
    num_q_heads,
    num_k_heads,
    HALF: tl.constexpr,
    HALF_PAD: tl.constexpr,
    QH_PAD: tl.constexpr,
    KH_PAD: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    pos = tl.load(pos_ptr + token).to(tl.int64)
    cos, sin = _cos_sin(cos_sin_ptr, pos, stride_cs, HALF, HALF_PAD)
    _rotate_heads(
        q_ptr, q_out_ptr, stride_qt, stride_qh, stride_qot, stride_qoh, token, num_q_heads,
        cos, sin, HALF, HALF_PAD, QH_PAD,
    )  # fmt: skip
    _rotate_heads(
        k_ptr, k_out_ptr, stride_kt, stride_kh, stride_kot, stride_koh, token, num_k_heads,
        cos, sin, HALF, HALF_PAD, KH_PAD,
    )  # fmt: skip


def rotary(
    q: torch.Tensor, k: torch.Tensor, positions: torch.Tensor, cos_sin: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """q [T, Hq, D], k [T, Hk, D], positions [T], cos_sin [max_pos, D] -> rotated (q, k)."""
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and cos_sin.stride(-1) == 1
    half = cos_sin.shape[-1] // 2
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    k_out = torch.empty(k.shape, dtype=k.dtype, device=k.device)
    if q.shape[0] == 0:
        return q_out, k_out
    rotary_kernel[(q.shape[0],)](
        q, k, q_out, k_out, positions, cos_sin,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1),
        q_out.stride(0), q_out.stride(1), k_out.stride(0), k_out.stride(1),
        cos_sin.stride(0), q.shape[1], k.shape[1],
        HALF=half,
        HALF_PAD=triton.next_power_of_2(half),
        QH_PAD=triton.next_power_of_2(q.shape[1]),
        KH_PAD=triton.next_power_of_2(k.shape[1]),
        num_warps=4,
    )  # fmt: skip
    return q_out, k_out
