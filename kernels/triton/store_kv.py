"""Scatter k, v [T, Hk, D] into the paged caches at flat slots (negative slots are skipped).

A float8 (e4m3) cache stores k / k_scale and v / v_scale, saturated to the format's +-448."""

from __future__ import annotations

import torch
import triton
import triton.language as tl


@triton.jit
def store_kv_kernel(
    k_ptr,
    v_ptr,
    k_cache_ptr,
    v_cache_ptr,
    slot_ptr,
    stride_kt,
    stride_kh,
    stride_vt,
    stride_vh,
    stride_cs,
    stride_ch,
    num_heads,
    head_dim,
    k_scale_inv,
    v_scale_inv,
    HEADS_PAD: tl.constexpr,
    D_PAD: tl.constexpr,
    FP8: tl.constexpr,
):
    token = tl.program_id(0).to(tl.int64)
    slot = tl.load(slot_ptr + token).to(tl.int64)
    if slot >= 0:
        heads = tl.arange(0, HEADS_PAD)[:, None]  # [Hk, 1]
        cols = tl.arange(0, D_PAD)[None, :]  # [1, D]
        mask = (heads < num_heads) & (cols < head_dim)
        dst = slot * stride_cs + heads * stride_ch + cols
        k = tl.load(k_ptr + token * stride_kt + heads * stride_kh + cols, mask=mask)
        v = tl.load(v_ptr + token * stride_vt + heads * stride_vh + cols, mask=mask)
        if FP8:
            k = tl.clamp(k.to(tl.float32) * k_scale_inv, -448.0, 448.0)
            v = tl.clamp(v.to(tl.float32) * v_scale_inv, -448.0, 448.0)
        tl.store(k_cache_ptr + dst, k.to(k_cache_ptr.dtype.element_ty), mask=mask)
        tl.store(v_cache_ptr + dst, v.to(v_cache_ptr.dtype.element_ty), mask=mask)


def store_kv(
    k: torch.Tensor,
    v: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    slot_mapping: torch.Tensor,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
) -> None:
    """Write k, v [T, Hk, D] into caches [num_blocks, block_size, Hk, D] at flat slots [T]."""
    assert k_cache.is_contiguous() and v_cache.is_contiguous()
    assert k.stride(-1) == 1 and v.stride(-1) == 1
    if k.shape[0] == 0:
        return
    num_heads, head_dim = k.shape[1], k.shape[2]
    store_kv_kernel[(k.shape[0],)](
        k, v, k_cache, v_cache, slot_mapping,
        k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        k_cache.stride(1), k_cache.stride(2), num_heads, head_dim, 1.0 / k_scale, 1.0 / v_scale,
        HEADS_PAD=triton.next_power_of_2(num_heads),
        D_PAD=triton.next_power_of_2(head_dim),
        FP8=k_cache.dtype == torch.float8_e4m3fn,
        num_warps=4,
    )  # fmt: skip
