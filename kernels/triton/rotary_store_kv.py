"""Rotary embedding of q and k fused with the paged KV-cache store of the rotated k and of v.

One launch does what ``rotary`` then ``store_kv`` do in two: k is read once (from the QKV
projection's output) and written once (into its cache slot); only q comes back. Program (t, 0)
rotates token t's query heads into the output, program (t, 1) rotates its key heads and stores
them with the value heads at ``slot_mapping[t]`` (skipped when the slot is negative, as the
store kernel does). The rotated k is rounded to k's dtype before it is stored, and a float8
(e4m3) cache gets k / k_scale and v / v_scale saturated to +-448, so the caches hold exactly the
bytes of the two separate kernels.

Float8 caches are passed as uint8 views (Triton's CPU interpreter has no float8 tensors); the
kernel converts with the GPU's own conversion, or under the interpreter (whose float8 conversion
rounds wrongly) with an integer rounding to nearest even that gives the same bytes. The kernel has
no per-batch integer argument (the token count is the grid; strides and head counts are the
model's), so a new batch size never compiles a new variant.
"""

from __future__ import annotations

import os

import torch
import triton
import triton.language as tl

from kernels.triton.pdl import launch_options, use_pdl
from kernels.triton.rotary import _cos_sin, _rotate_heads

# the CPU interpreter's float8 conversion is wrong (31.0 -> 16.0): it takes the integer path
_SOFT_FP8 = os.environ.get("TRITON_INTERPRET") == "1"


@triton.jit
def _e4m3_bits(x, SOFT: tl.constexpr):
    """float32 x within +-448 -> its float8 e4m3fn bits (round to nearest even) as uint8."""
    if SOFT:
        bits = x.to(tl.int32, bitcast=True)
        mag = bits & 0x7FFFFFFF
        # normal (|x| >= 2^-6): keep 3 mantissa bits, rounding to even; rebias 127 -> 7
        normal = ((mag + 0x7FFFF + ((mag >> 20) & 1)) >> 20) - (120 << 3)
        # subnormal: a multiple of 2^-9, rounded to even (8 is the smallest normal's code)
        units = tl.abs(x) * 512.0
        whole = units.to(tl.int32)
        frac = units - whole.to(tl.float32)
        up = (frac > 0.5) | ((frac == 0.5) & ((whole & 1) == 1))
        code = tl.where(mag >= 0x3C800000, normal, whole + up.to(tl.int32))
        code = tl.where(bits < 0, code | 0x80, code)
        code = tl.where(x != x, 0x7F, code)  # NaN
        return code.to(tl.uint8)
    else:
        return x.to(tl.float8e4nv).to(tl.uint8, bitcast=True)


@triton.jit
def _store_cache(ptr, x, scale_inv, mask, FP8: tl.constexpr, SOFT: tl.constexpr):
    """Store x (k's or v's dtype) into a cache: as is, or x / scale saturated, as float8 bits."""
    if FP8:
        y = tl.clamp(x.to(tl.float32) * scale_inv, -448.0, 448.0)
        tl.store(ptr, _e4m3_bits(y, SOFT), mask=mask)
    else:
        tl.store(ptr, x.to(ptr.dtype.element_ty), mask=mask)


@triton.jit
def rotary_store_kv_kernel(
    q_ptr, k_ptr, v_ptr, q_out_ptr, pos_ptr, cos_sin_ptr, slot_ptr, k_cache_ptr, v_cache_ptr,
    stride_qt, stride_qh, stride_kt, stride_kh, stride_vt, stride_vh, stride_qot, stride_qoh,
    stride_cs, stride_slot, stride_ch, num_q_heads, num_kv_heads, k_scale_inv, v_scale_inv,
    HALF: tl.constexpr, HALF_PAD: tl.constexpr, QH_PAD: tl.constexpr, KH_PAD: tl.constexpr,
    FP8: tl.constexpr, SOFT_FP8: tl.constexpr, USE_PDL: tl.constexpr,
):  # fmt: skip
    if USE_PDL:  # wait for the kernel before (launched early: kernels.triton.pdl)
        tl.extra.cuda.gdc_wait()
    token = tl.program_id(0).to(tl.int64)
    part = tl.program_id(1)
    pos = tl.load(pos_ptr + token).to(tl.int64)
    cos, sin = _cos_sin(cos_sin_ptr, pos, stride_cs, HALF, HALF_PAD)
    if part == 0:
        _rotate_heads(
            q_ptr, q_out_ptr, stride_qt, stride_qh, stride_qot, stride_qoh, token, num_q_heads,
            cos, sin, HALF, HALF_PAD, QH_PAD,
        )  # fmt: skip
    else:
        slot = tl.load(slot_ptr + token).to(tl.int64)
        if slot >= 0:
            heads = tl.arange(0, KH_PAD)[:, None]  # [Hk, 1]
            half_cols = tl.arange(0, HALF_PAD)[None, :]  # [1, D/2]
            mask = (heads < num_kv_heads) & (half_cols < HALF)
            src_k = k_ptr + token * stride_kt + heads * stride_kh + half_cols
            src_v = v_ptr + token * stride_vt + heads * stride_vh + half_cols
            k1 = tl.load(src_k, mask=mask, other=0.0)
            k2 = tl.load(src_k + HALF, mask=mask, other=0.0)
            v1 = tl.load(src_v, mask=mask, other=0.0)
            v2 = tl.load(src_v + HALF, mask=mask, other=0.0)
            a = k1.to(tl.float32)
            b = k2.to(tl.float32)
            r1 = (a * cos - b * sin).to(k1.dtype)  # what the rotary kernel writes
            r2 = (b * cos + a * sin).to(k1.dtype)
            dst = slot * stride_slot + heads * stride_ch + half_cols
            _store_cache(k_cache_ptr + dst, r1, k_scale_inv, mask, FP8, SOFT_FP8)
            _store_cache(k_cache_ptr + dst + HALF, r2, k_scale_inv, mask, FP8, SOFT_FP8)
            _store_cache(v_cache_ptr + dst, v1, v_scale_inv, mask, FP8, SOFT_FP8)
            _store_cache(v_cache_ptr + dst + HALF, v2, v_scale_inv, mask, FP8, SOFT_FP8)


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
    """q [T, Hq, D], k / v [T, Hk, D] (strided views of the QKV output are fine), positions [T],
    cos_sin [max_pos, D], caches [num_blocks, block_size, Hk, D], slots [T] -> rotated q."""
    assert q.stride(-1) == 1 and k.stride(-1) == 1 and v.stride(-1) == 1
    assert cos_sin.stride(-1) == 1 and k_cache.is_contiguous() and v_cache.is_contiguous()
    assert k_cache.dtype == v_cache.dtype and k.shape == v.shape
    half = cos_sin.shape[-1] // 2
    q_out = torch.empty(q.shape, dtype=q.dtype, device=q.device)
    if q.shape[0] == 0:
        return q_out
    fp8 = k_cache.dtype == torch.float8_e4m3fn
    if fp8:  # bytes: the interpreter has no float8 tensors; the kernel writes the bits
        k_cache, v_cache = k_cache.view(torch.uint8), v_cache.view(torch.uint8)
    pdl = use_pdl(q)
    rotary_store_kv_kernel[(q.shape[0], 2)](
        q, k, v, q_out, positions, cos_sin, slot_mapping, k_cache, v_cache,
        q.stride(0), q.stride(1), k.stride(0), k.stride(1), v.stride(0), v.stride(1),
        q_out.stride(0), q_out.stride(1), cos_sin.stride(0), k_cache.stride(1),
        k_cache.stride(2), q.shape[1], k.shape[1], 1.0 / k_scale, 1.0 / v_scale,
        HALF=half,
        HALF_PAD=triton.next_power_of_2(half),
        QH_PAD=triton.next_power_of_2(q.shape[1]),
        KH_PAD=triton.next_power_of_2(k.shape[1]),
        FP8=fp8,
        SOFT_FP8=_SOFT_FP8,
        USE_PDL=pdl,
        num_warps=4,
        **launch_options(pdl),
    )  # fmt: skip
    return q_out
