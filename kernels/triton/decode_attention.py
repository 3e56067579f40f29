"""Paged decode attention (one query token per sequence), GQA, split-KV, optionally persistent.

Work items are (sequence, kv head, KV split). Each item handles the whole GQA group of its kv head
(the group padded to 16 rows for ``tl.dot``), so every K/V byte is read once. With ``num_sms`` the
grid is a persistent one of ``num_sms * ctas_per_sm`` programs that stride over the items: the
kernel then occupies no more than the SM budget it is given. Splits (> 1) write float32 partials
and their log-sum-exp, merged by a second small kernel; the launch plan, the K/V gather, the
softmax step and the epilogue are shared with the other paged kernels (``paged_common``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import triton
import triton.language as tl

from kernels.triton.paged_common import (
    LOG2E,
    PER_BATCH_ARGS,
    cache_strides,
    fp8_rows,
    fp16_rows,
    launch_grid,
    length_chunk,
    load_kv,
    merge_splits,
    page_id,
    softmax_step,
    split_bounds,
    store_decode,
)
from kernels.triton.pdl import launch_options, use_pdl


@dataclass(frozen=True)
class DecodeConfig:
    block_n: int = 64  # KV tokens per inner step
    num_warps: int = 4
    num_stages: int = 4
    ctas_per_sm: int = 4  # persistent programs per SM
    swap_ab: bool = False  # KV tile as the MMA's M dimension (wgmma on Hopper)
    tma: bool = False  # pages fetched by TMA copies (decode_attention_tma; Hopper, 16-bit caches)
    # TMA kernel only: page ids loaded this many at a time into registers before their copies
    # (a power of two, >= 2); 0: each step's ids loaded one step ahead
    ids_block: int = 0
    # float8 caches only: the dtype K/V tiles are widened to for the two dots. "fp16" (the
    # default): float16, one cvt per two values, with q scaled per row by a power of two into
    # float16's range (``fp16_rows``); 1.3-1.4x faster than "q" on an H200 and closer to the
    # reference (docs/performance.md). "q": the queries' (bfloat16 on the engine: e4m3 -> bf16
    # has no single instruction on sm_90, Triton converts through float16, three instructions per
    # two values); "fp8": no widening, float8 x float8 MMAs (q quantised per row, P times
    # P_SCALE), only in the gather kernel with swap_ab, where Triton emits Hopper's fp8 wgmma
    # (with 16-row MMAs it widens float8 operands to float16 itself; measured no faster, 14x the
    # error)
    fp8_dot: Literal["q", "fp16", "fp8"] = "fp16"
    # gather kernel only: K/V loaded with L2's evict_first policy (read once; what a kernel
    # beside it reuses from L2 stays), for decode attention beside GEMMs; off by default
    evict_kv: bool = False


FP8_DOTS = ("q", "fp16", "fp8")
# fp8 dots: probabilities (<= 1) times this power of two before e4m3 (largest 448)
P_SCALE = tl.constexpr(256.0)


def dot_dtype(cfg: DecodeConfig, k_cache: torch.Tensor) -> str:
    """The dots' operand dtype over ``k_cache``: cfg.fp8_dot over a float8 cache, else "q"."""
    if cfg.fp8_dot not in FP8_DOTS:
        raise ValueError(f"fp8_dot must be one of {FP8_DOTS}, got {cfg.fp8_dot!r}")
    if k_cache.dtype != torch.float8_e4m3fn:
        return "q"
    if cfg.fp8_dot == "fp8" and (cfg.tma or not cfg.swap_ab):
        raise ValueError("fp8_dot 'fp8' runs in the gather kernel with swap_ab (Hopper fp8 wgmma)")
    return cfg.fp8_dot


@triton.jit
def _update_swapped(q, k, v, valid, m_i, l_i, acc, scale_log2, PRECISION: tl.constexpr,
                    P_FP8: tl.constexpr):  # fmt: skip
    """The same step transposed, so the KV tile is the MMA's M (64+ rows, Hopper wgmma):
    s^T = k q^T [N, G], acc^T [D, G] += v^T p^T. ``scale_log2``: a scalar or [1, G]. P_FP8
    (float8 V): p times P_SCALE in e4m3, so acc is P_SCALE times too large."""
    s = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale_log2  # [N, G]
    s = tl.where(valid[:, None], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 0))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[None, :])
    l_i = l_i * alpha + tl.sum(p, 0)
    if P_FP8:
        acc = acc * alpha[None, :] + tl.dot(tl.trans(v), (p * P_SCALE).to(v.dtype))
    else:
        acc = acc * alpha[None, :] + tl.dot(tl.trans(v), p.to(v.dtype), input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit(do_not_specialize=PER_BATCH_ARGS)
def decode_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, order_ptr, out_ptr,
    part_out_ptr, part_lse_ptr, scale_log2,
    v_scale, stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb,
    stride_vs, stride_vh, stride_bt, stride_ot, stride_oh, num_seqs, num_kv_heads, num_splits,
    split_len, split_share, num_programs, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    PAGE: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr, STAGES: tl.constexpr,
    PRECISION: tl.constexpr, SWAP_AB: tl.constexpr, DOTS: tl.constexpr, ORDERED: tl.constexpr,
    USE_PDL: tl.constexpr, EVICT: tl.constexpr,
):  # fmt: skip
    if USE_PDL:  # wait for the kernel before (launched early: kernels.triton.pdl)
        tl.extra.cuda.gdc_wait()
    decode_items(
        tl.program_id(0), num_programs, q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr,
        context_lens_ptr, order_ptr, out_ptr, part_out_ptr, part_lse_ptr, scale_log2, v_scale,
        stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
        stride_bt, stride_ot, stride_oh, num_seqs, num_kv_heads, num_splits, split_len,
        split_share, GROUP, GROUP_PAD, HEAD_DIM, PAGE, BLOCK_N, SPLIT, STAGES, PRECISION, SWAP_AB,
        DOTS, ORDERED, EVICT,
    )  # fmt: skip


@triton.jit
def decode_items(
    first, stride, q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, order_ptr,
    out_ptr, part_out_ptr, part_lse_ptr, scale_log2,
    v_scale, stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb,
    stride_vs, stride_vh, stride_bt, stride_ot, stride_oh, num_seqs, num_kv_heads, num_splits,
    split_len, split_share, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr,
    PAGE: tl.constexpr, BLOCK_N: tl.constexpr, SPLIT: tl.constexpr, STAGES: tl.constexpr,
    PRECISION: tl.constexpr, SWAP_AB: tl.constexpr, DOTS: tl.constexpr, ORDERED: tl.constexpr,
    EVICT: tl.constexpr,
):  # fmt: skip
    """The work items ``first``, ``first + stride``, ... of a decode call (the kernel's body: a
    program's share, or one role's in a launch that also runs other work). ORDERED: the items
    take their sequences in the order ``order_ptr`` lists them (e.g. longest context first, so
    that the longest items start first), else in batch order."""
    rows = tl.arange(0, GROUP_PAD)  # [G]
    cols = tl.arange(0, HEAD_DIM)  # [D]
    row_mask = rows < GROUP
    num_items = num_seqs * num_kv_heads * num_splits
    chunk = length_chunk(context_lens_ptr, num_seqs, split_share, BLOCK_N, SPLIT)
    for item in range(first, num_items, stride):
        split = item % num_splits
        kvh = (item // num_splits) % num_kv_heads
        seq = item // (num_splits * num_kv_heads)
        if ORDERED:
            seq = tl.load(order_ptr + seq)
        ctx = tl.load(context_lens_ptr + seq)
        start, end = split_bounds(ctx, split, num_splits, split_len, chunk, BLOCK_N, SPLIT)
        heads = kvh * GROUP + rows
        q = tl.load(
            q_ptr + seq.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + cols[None, :],
            mask=row_mask[:, None],
            other=0.0,
        )  # [G, D]
        if DOTS == "fp8":  # float8 dots (swap_ab): q quantised, its row scales into the scale
            q, q_scale = fp8_rows(q)
            scale_s = (q_scale * scale_log2)[None, :]  # [1, G]
        elif DOTS == "fp16":  # float16 dots over a float8 cache: q's row powers into the scale
            q, down = fp16_rows(q)
            if SWAP_AB:  # noqa: SIM108 (a constexpr branch, resolved at compile time)
                scale_s = (down * scale_log2)[None, :]  # [1, G]
            else:
                scale_s = (down * scale_log2)[:, None]  # [G, 1]
        else:
            scale_s = scale_log2
        m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([GROUP_PAD], tl.float32)
        if SWAP_AB:
            acc = tl.zeros([HEAD_DIM, GROUP_PAD], tl.float32)  # transposed: [D, G]
        else:
            acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        table = block_tables_ptr + seq.to(tl.int64) * stride_bt
        # page ids are fetched one step ahead: K/V addresses then come from a loop-carried value,
        # which lets Triton's pipeliner stream K/V through shared memory (cp.async, STAGES deep)
        next_page = page_id(table, start + tl.arange(0, BLOCK_N), end, PAGE)
        for n0 in tl.range(start, end, BLOCK_N, num_stages=STAGES):
            offs = n0 + tl.arange(0, BLOCK_N)  # [N]
            valid = offs < end
            page = next_page
            next_page = page_id(table, offs + BLOCK_N, end, PAGE)
            k, v = load_kv(k_cache_ptr, v_cache_ptr, page, offs, valid, kvh, cols, stride_kb,
                           stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, PAGE,
                           EVICT)  # fmt: skip
            # a float8 cache is widened to q's dtype (float16 with fp16 dots, none with fp8
            # dots) here; its scales are applied outside the loop
            k, v = k.to(q.dtype), v.to(q.dtype)
            if SWAP_AB:
                m_i, l_i, acc = _update_swapped(q, k, v, valid, m_i, l_i, acc, scale_s,
                                                PRECISION, DOTS == "fp8")  # fmt: skip
            else:
                m_i, l_i, acc = softmax_step(q, k, v, valid[None, :], m_i, l_i, acc, scale_s,
                                             PRECISION)  # fmt: skip
        if SWAP_AB:
            acc = tl.trans(acc)
        store_decode(acc * v_scale, l_i, m_i, out_ptr, part_out_ptr, part_lse_ptr, seq, heads,
                     split, num_kv_heads * GROUP, num_splits, stride_ot, stride_oh, cols, row_mask,
                     HEAD_DIM, SPLIT)  # fmt: skip


def decode_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    max_context_len: int,
    scale: float,
    out: torch.Tensor,
    num_sms: int | None = None,
    config: DecodeConfig | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    order: torch.Tensor | None = None,
) -> None:
    """Decode attention of q [B, Hq, D] over caches [blocks, page, Hk, D] into out [B, Hq, D].

    ``num_sms`` sizes a persistent grid to that many SMs; None gives one program per work item.
    No host syncs: the grid depends only on shapes and ``max_context_len``. A float8 cache is
    read as stored value x ``k_scale`` / ``v_scale`` (folded into the softmax scale and the
    epilogue); ``config.fp8_dot`` picks the dtype its tiles are widened to. ``order`` (int32 [B],
    a permutation of the rows) is the order in which the rows' work items are handed out; the
    output is the same whatever the order.
    """
    cfg = config or DecodeConfig()
    dots = dot_dtype(cfg, k_cache)
    if q.shape[0] == 0:
        return
    grid = launch_grid(q, k_cache, max_context_len, num_sms, cfg.block_n, cfg.ctas_per_sm, out,
                       whole_gpu_kernel="gather")  # fmt: skip
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    group = num_heads // num_kv_heads
    pdl = use_pdl(q)
    decode_kernel[(grid.programs,)](
        q, k_cache, v_cache, block_tables, context_lens,
        context_lens if order is None else order, out, grid.part_out, grid.part_lse,
        scale * k_scale * LOG2E, v_scale / P_SCALE.value if dots == "fp8" else v_scale,
        q.stride(0), q.stride(1),
        *cache_strides(k_cache, v_cache),
        block_tables.stride(0), out.stride(0), out.stride(1),
        num_seqs, num_kv_heads, grid.num_splits, grid.split_len, grid.split_share, grid.programs,
        GROUP=group,
        GROUP_PAD=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim,
        PAGE=page,
        BLOCK_N=cfg.block_n,
        SPLIT=grid.split_kind,
        STAGES=cfg.num_stages if q.element_size() < 4 else 2,  # float32 tiles: less smem
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        SWAP_AB=cfg.swap_ab,
        DOTS=dots,
        ORDERED=order is not None,
        USE_PDL=pdl,
        EVICT="evict_first" if cfg.evict_kv else "",
        num_warps=cfg.num_warps,
        **launch_options(pdl),
    )  # fmt: skip
    merge_splits(grid, out)
