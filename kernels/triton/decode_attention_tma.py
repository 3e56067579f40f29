"""Paged decode attention with K/V pages fetched by the tensor-memory accelerator (Hopper TMA).

The same work items and online softmax as ``decode_attention`` (sequence, kv head, KV split; the
GQA group as the MMA's M), but each KV page of one head is one TMA copy of ``[page, head_dim]``
described once on the host, instead of per-element gather addresses computed by every thread.
The inner loop then spends its instructions on the two small MMAs and the softmax, which is what
lets a few SMs (a green-context partition) keep HBM busy. Pages are fetched ``pages_per_step`` at a
time, their ids one step ahead (a loop-carried value, so that the pipeliner streams the copies),
or, with ``DecodeConfig.ids_block``, that many ids at once into registers: each step then picks
its ids out of registers, so no copy waits for a page-id load and the pipeliner may issue copies
``num_stages`` steps ahead (one id load per ``ids_block`` pages instead of one per step).
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl
from triton.tools.tensor_descriptor import TensorDescriptor

from kernels.triton.decode_attention import DecodeConfig, dot_dtype
from kernels.triton.paged_common import (
    LOG2E,
    PER_BATCH_ARGS,
    fp16_rows,
    launch_grid,
    length_chunk,
    merge_splits,
    page_id,
    softmax_step,
    split_bounds,
    store_decode,
)
from kernels.triton.pdl import launch_options, use_pdl


@triton.jit
def _page_step(q, k_desc, v_desc, page, n0, end, kvh, m_i, l_i, acc, scale_log2,
               PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr):  # fmt: skip
    """One page of one kv head: TMA loads, then the online-softmax update (``scale_log2``: a
    scalar, or [G, 1] with float16 dots)."""
    row = page * PAGE
    k = k_desc.load([row, kvh * HEAD_DIM]).to(q.dtype)  # [PAGE, D]; float8 pages widened to q's
    v = v_desc.load([row, kvh * HEAD_DIM]).to(q.dtype)
    valid = n0 + tl.arange(0, PAGE) < end
    v = tl.where(valid[:, None], v, 0.0)  # slots past the context may hold anything, even NaN
    return softmax_step(q, k, v, valid[None, :], m_i, l_i, acc, scale_log2, PRECISION)


@triton.jit(do_not_specialize=PER_BATCH_ARGS)
def decode_tma_kernel(
    q_ptr, k_desc, v_desc, block_tables_ptr, context_lens_ptr, order_ptr, out_ptr, part_out_ptr,
    part_lse_ptr, scale_log2,
    v_scale, stride_qt, stride_qh, stride_bt, stride_ot, stride_oh, num_seqs, num_kv_heads,
    num_splits, split_len, split_share, num_programs, GROUP: tl.constexpr, GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, TWO_PAGES: tl.constexpr, SPLIT: tl.constexpr,
    STAGES: tl.constexpr, PRECISION: tl.constexpr, IDS_BLOCK: tl.constexpr,
    DOTS: tl.constexpr, ORDERED: tl.constexpr, USE_PDL: tl.constexpr,
):  # fmt: skip
    if USE_PDL:  # wait for the kernel before (launched early: kernels.triton.pdl)
        tl.extra.cuda.gdc_wait()
    rows = tl.arange(0, GROUP_PAD)
    cols = tl.arange(0, HEAD_DIM)
    row_mask = rows < GROUP
    STEP: tl.constexpr = 2 * PAGE if TWO_PAGES else PAGE
    num_items = num_seqs * num_kv_heads * num_splits
    chunk = length_chunk(context_lens_ptr, num_seqs, split_share, STEP, SPLIT)
    for item in range(tl.program_id(0), num_items, num_programs):
        split = item % num_splits
        kvh = (item // num_splits) % num_kv_heads
        seq = item // (num_splits * num_kv_heads)
        if ORDERED:  # the sequences in order_ptr's order (as decode_items)
            seq = tl.load(order_ptr + seq)
        ctx = tl.load(context_lens_ptr + seq)
        # start: a multiple of STEP
        start, end = split_bounds(ctx, split, num_splits, split_len, chunk, STEP, SPLIT)
        heads = kvh * GROUP + rows
        q = tl.load(
            q_ptr + seq.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + cols[None, :],
            mask=row_mask[:, None],
            other=0.0,
        )
        if DOTS == "fp16":  # float16 dots over float8 pages: q's row powers go into the scale
            q, down = fp16_rows(q)
            scale_s = (down * scale_log2)[:, None]  # [G, 1]
        else:
            scale_s = scale_log2
        m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([GROUP_PAD], tl.float32)
        acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        table = block_tables_ptr + seq.to(tl.int64) * stride_bt
        if IDS_BLOCK > 0:
            m_i, l_i, acc = _preloaded_ids_loop(
                q, k_desc, v_desc, table, start, end, kvh, m_i, l_i, acc, scale_s, PAGE,
                HEAD_DIM, PRECISION, TWO_PAGES, STAGES, IDS_BLOCK,
            )  # fmt: skip
        else:
            # a page's id is loaded one step before its copy is issued (Triton's pipeliner
            # follows one loop-carried step, not more): each program then moves about one step
            # of pages per load latency, so the SM's bandwidth comes from many small programs
            page_a = page_id(table, start, end, PAGE)
            page_b = page_id(table, start + PAGE, end, PAGE)
            for n0 in tl.range(start, end, STEP, num_stages=STAGES):
                cur_a = page_a
                cur_b = page_b
                page_a = page_id(table, n0 + STEP, end, PAGE)
                if TWO_PAGES:
                    page_b = page_id(table, n0 + STEP + PAGE, end, PAGE)
                m_i, l_i, acc = _page_step(q, k_desc, v_desc, cur_a, n0, end, kvh, m_i, l_i,
                                           acc, scale_s, PAGE, HEAD_DIM, PRECISION)  # fmt: skip
                if TWO_PAGES:
                    m_i, l_i, acc = _page_step(q, k_desc, v_desc, cur_b, n0 + PAGE, end, kvh,
                                               m_i, l_i, acc, scale_s, PAGE, HEAD_DIM,
                                               PRECISION)  # fmt: skip
        store_decode(acc * v_scale, l_i, m_i, out_ptr, part_out_ptr, part_lse_ptr, seq, heads,
                     split, num_kv_heads * GROUP, num_splits, stride_ot, stride_oh, cols, row_mask,
                     HEAD_DIM, SPLIT)  # fmt: skip


@triton.jit
def _preloaded_ids_loop(q, k_desc, v_desc, table, start, end, kvh, m_i, l_i, acc, scale_log2,
                        PAGE: tl.constexpr, HEAD_DIM: tl.constexpr, PRECISION: tl.constexpr,
                        TWO_PAGES: tl.constexpr, STAGES: tl.constexpr,
                        IDS_BLOCK: tl.constexpr):  # fmt: skip
    """One work item's pages, ``IDS_BLOCK`` page ids loaded at a time; each step takes its ids
    out of registers (a masked sum over the block), so the copies depend on no load."""
    STEP: tl.constexpr = 2 * PAGE if TWO_PAGES else PAGE
    slots = tl.arange(0, IDS_BLOCK)
    for c0 in range(start, end, IDS_BLOCK * PAGE):  # c0: a multiple of STEP (IDS_BLOCK >= 2)
        ids = page_id(table, c0 + slots * PAGE, end, PAGE)  # [IDS_BLOCK]; 0 past the context
        c_end = tl.minimum(end, c0 + IDS_BLOCK * PAGE)
        for n0 in tl.range(c0, c_end, STEP, num_stages=STAGES):
            j = (n0 - c0) // PAGE
            cur_a = tl.sum(tl.where(slots == j, ids, 0))
            m_i, l_i, acc = _page_step(q, k_desc, v_desc, cur_a, n0, end, kvh, m_i, l_i, acc,
                                       scale_log2, PAGE, HEAD_DIM, PRECISION)  # fmt: skip
            if TWO_PAGES:
                cur_b = tl.sum(tl.where(slots == j + 1, ids, 0))
                m_i, l_i, acc = _page_step(q, k_desc, v_desc, cur_b, n0 + PAGE, end, kvh, m_i,
                                           l_i, acc, scale_log2, PAGE, HEAD_DIM,
                                           PRECISION)  # fmt: skip
    return m_i, l_i, acc


# Best configurations measured per SM budget (bench/decode_attention_sms.py, H200, 2026-11-21,
# 256 x 1024 tokens; green contexts below 132 SMs): (block_n, warps, stages, programs per SM).
TUNED = {
    132: DecodeConfig(32, 1, 2, 8, tma=True),
    64: DecodeConfig(16, 1, 3, 16, tma=True),
    48: DecodeConfig(32, 1, 2, 8, tma=True),
    32: DecodeConfig(32, 1, 2, 16, tma=True),
}


def tuned_config(num_sms: int, page: int) -> DecodeConfig:
    """The measured configuration of the nearest SM budget, its step scaled to the page size."""
    best = TUNED[min(TUNED, key=lambda n: (abs(n - num_sms), n))]
    pages = best.block_n // 16
    return DecodeConfig(pages * page, best.num_warps, best.num_stages, best.ctas_per_sm, tma=True)


TMA_CACHE_DTYPES = (torch.bfloat16, torch.float16, torch.float8_e4m3fn)


def tma_supported(q: torch.Tensor, k_cache: torch.Tensor) -> bool:
    """TMA needs a Hopper-class GPU, 16-bit or float8 caches and 16-byte aligned rows."""
    if q.device.type != "cuda" or k_cache.dtype not in TMA_CACHE_DTYPES:
        return False
    if q.dtype not in (torch.bfloat16, torch.float16):
        return False
    if torch.cuda.get_device_capability(q.device)[0] < 9:
        return False
    head_bytes = k_cache.shape[-1] * k_cache.element_size()
    row = k_cache.shape[-2] * head_bytes
    return k_cache.is_contiguous() and row % 16 == 0 and head_bytes >= 16


def _descriptor(cache: torch.Tensor) -> TensorDescriptor:
    """The cache [blocks, page, Hk, D] as a 2-D tensor [blocks * page, Hk * D], read one page of
    one head ([page, D]) per copy."""
    blocks, page, kv_heads, head_dim = cache.shape
    flat = cache.view(blocks * page, kv_heads * head_dim)
    return TensorDescriptor.from_tensor(flat, [page, head_dim])


def decode_attention_tma(
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
    """Same contract as ``decode_attention``; ``config.block_n`` is 1 or 2 pages per step."""
    cfg = config or DecodeConfig(block_n=2 * k_cache.shape[1])
    dots = dot_dtype(cfg, k_cache)  # "fp8" raises: float8 MMAs need the gather kernel
    num_seqs, num_heads, head_dim = q.shape
    if num_seqs == 0:
        return
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    if cfg.block_n not in (page, 2 * page):
        raise ValueError(f"TMA decode steps one or two pages: block_n {cfg.block_n}, page {page}")
    ids = cfg.ids_block
    if ids and (ids < 2 or ids & (ids - 1)):
        raise ValueError(f"ids_block must be 0 or a power of two >= 2, got {ids}")
    group = num_heads // num_kv_heads
    grid = launch_grid(q, k_cache, max_context_len, num_sms, cfg.block_n, cfg.ctas_per_sm, out,
                       whole_gpu_kernel="tma")  # fmt: skip
    pdl = use_pdl(q)
    decode_tma_kernel[(grid.programs,)](
        q, _descriptor(k_cache), _descriptor(v_cache), block_tables, context_lens,
        context_lens if order is None else order, out,
        grid.part_out, grid.part_lse, scale * k_scale * LOG2E, v_scale,
        q.stride(0), q.stride(1), block_tables.stride(0), out.stride(0), out.stride(1),
        num_seqs, num_kv_heads, grid.num_splits, grid.split_len, grid.split_share, grid.programs,
        GROUP=group,
        GROUP_PAD=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim,
        PAGE=page,
        TWO_PAGES=cfg.block_n == 2 * page,
        SPLIT=grid.split_kind,
        STAGES=cfg.num_stages,
        PRECISION="tf32",
        IDS_BLOCK=cfg.ids_block,
        DOTS=dots,
        ORDERED=order is not None,
        USE_PDL=pdl,
        num_warps=cfg.num_warps,
        **launch_options(pdl),
    )  # fmt: skip
    merge_splits(grid, out)
