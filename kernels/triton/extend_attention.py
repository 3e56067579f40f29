"""Paged prefill / extend attention: a chunk of queries attends causally over its cached prefix.

Sequence ``s`` owns query rows ``cu_seqlens_q[s]:cu_seqlens_q[s+1]`` whose keys and values are
already in the cache; query row ``j`` sits at position ``context_len - q_len + j``. One program
handles BLOCK_M query rows of one head; the grid is sized by the host int ``max_query_len``.

A program's key positions fall in two ranges: those every one of its rows sees (below the first
row's position), streamed without any mask, and the diagonal band, where the causal mask applies.
Programs are ordered heads fastest, so the query heads that share a KV head read the same K/V
tiles at about the same time (from L2), and the last (longest) query blocks of a chunk first.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import triton
import triton.language as tl

from kernels.triton.paged_common import (
    LOG2E,
    cache_strides,
    finish,
    fp16_rows,
    load_kv,
    page_id,
    softmax_step,
    store_rows,
)


@dataclass(frozen=True)
class ExtendConfig:
    """Tile sizes and pipeline of the extend kernel."""

    block_m: int = 64  # query rows per program
    block_n: int = 64  # key positions per step
    num_warps: int = 4
    stages: int = 2  # K/V tiles in flight (software pipeline depth)


@triton.jit
def _keys(q, k_cache_ptr, v_cache_ptr, table, start, stop, end, q_pos, m_i, l_i, acc, kvh, cols,
          scale_log2, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh,
          DTYPE: tl.constexpr, PAGE: tl.constexpr, BLOCK_N: tl.constexpr, STAGES: tl.constexpr,
          PRECISION: tl.constexpr, CAUSAL: tl.constexpr):  # fmt: skip
    """Online softmax over key positions start..stop-1 (a multiple of BLOCK_N from start; keys
    at ``end`` and beyond are masked off). CAUSAL: drop keys past each row's position."""
    # page ids are fetched one step ahead: K/V addresses then come from a loop-carried value,
    # which lets Triton's pipeliner stream K/V through shared memory (cp.async, STAGES deep)
    next_page = page_id(table, start + tl.arange(0, BLOCK_N), end, PAGE)
    for n0 in tl.range(start, stop, BLOCK_N, num_stages=STAGES):
        offs = n0 + tl.arange(0, BLOCK_N)  # [N]
        valid = offs < end
        page = next_page
        next_page = page_id(table, offs + BLOCK_N, end, PAGE)
        k, v = load_kv(k_cache_ptr, v_cache_ptr, page, offs, valid, kvh, cols, stride_kb,
                       stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, PAGE, "")  # fmt: skip
        # a float8 cache is widened to DTYPE (float16, or q's dtype) here; its scales are applied
        # outside the loop
        k, v = k.to(DTYPE), v.to(DTYPE)
        if CAUSAL:  # noqa: SIM108 (a constexpr branch, resolved at compile time)
            mask = valid[None, :] & (offs[None, :] <= q_pos[:, None])  # [M, N]
        else:
            mask = valid[None, :]  # [1, N]: every row sees every valid key
        m_i, l_i, acc = softmax_step(q, k, v, mask, m_i, l_i, acc, scale_log2, PRECISION)
    return m_i, l_i, acc


@triton.jit(do_not_specialize=["stride_bt", "first_seq"])
def extend_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, cu_seqlens_q_ptr, out_ptr,
    scale_log2,
    v_scale, stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs,
    stride_vh, stride_bt, stride_ot, stride_oh, first_seq, GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    STAGES: tl.constexpr, PRECISION: tl.constexpr, FP16_DOTS: tl.constexpr,
):  # fmt: skip
    head = tl.program_id(0)
    m_block = tl.num_programs(1) - 1 - tl.program_id(1)  # the longest query blocks first
    seq = first_seq + tl.program_id(2)
    q_start = tl.load(cu_seqlens_q_ptr + seq)
    q_len = tl.load(cu_seqlens_q_ptr + seq + 1) - q_start
    if m_block * BLOCK_M < q_len:
        ctx = tl.load(context_lens_ptr + seq)
        kvh = head // GROUP
        rows = m_block * BLOCK_M + tl.arange(0, BLOCK_M)  # [M]
        cols = tl.arange(0, HEAD_DIM)  # [D]
        row_mask = rows < q_len
        q_pos = ctx - q_len + rows  # [M]
        tok = (q_start + rows).to(tl.int64)
        q = tl.load(q_ptr + tok[:, None] * stride_qt + head * stride_qh + cols[None, :],
                    mask=row_mask[:, None], other=0.0)  # fmt: skip
        if FP16_DOTS:  # float16 dots over a float8 cache: q's row powers go into the scale
            q, down = fp16_rows(q)
            scale_s = (down * scale_log2)[:, None]  # [M, 1]
            dtype = tl.float16
        else:
            scale_s = scale_log2
            dtype = q_ptr.dtype.element_ty
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        table = block_tables_ptr + seq.to(tl.int64) * stride_bt
        end = tl.minimum(ctx, ctx - q_len + (m_block + 1) * BLOCK_M)  # causal bound of the block
        # keys up to the block's first row position are seen by all its rows: no causal mask
        shared = (ctx - q_len + m_block * BLOCK_M + 1) // BLOCK_N * BLOCK_N
        m_i, l_i, acc = _keys(q, k_cache_ptr, v_cache_ptr, table, 0, shared, end, q_pos, m_i,
                              l_i, acc, kvh, cols, scale_s, stride_kb, stride_ks, stride_kh,
                              stride_vb, stride_vs, stride_vh, dtype, PAGE, BLOCK_N, STAGES,
                              PRECISION, False)  # fmt: skip
        m_i, l_i, acc = _keys(q, k_cache_ptr, v_cache_ptr, table, shared, end, end, q_pos, m_i,
                              l_i, acc, kvh, cols, scale_s, stride_kb, stride_ks, stride_kh,
                              stride_vb, stride_vs, stride_vh, dtype, PAGE, BLOCK_N, STAGES,
                              PRECISION, True)  # fmt: skip
        result, _ = finish(acc * v_scale, l_i, m_i)  # every row sees key 0, so l_i > 0
        store_rows(out_ptr, tok * stride_ot + head * stride_oh, cols, result, row_mask)


def default_config(q: torch.Tensor, max_query_len: int) -> ExtendConfig:
    """64 x 64 tiles, 4 warps, 2 stages for 16-bit queries: on an H200 as fast as any tile
    configuration swept (within 2%; bench/extend_attention.py, 2026-11-29), smaller tiles for
    float32 (ieee dots) and short chunks."""
    if q.element_size() >= 4:
        return ExtendConfig(block_m=32, block_n=32)
    if max_query_len <= 32:
        return ExtendConfig(block_m=32)
    return ExtendConfig()


def extend_attention(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    cu_seqlens_q: torch.Tensor,
    first_seq: int,
    num_seqs: int,
    max_query_len: int,
    scale: float,
    out: torch.Tensor,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    config: ExtendConfig | None = None,
    fp8_dot: str = "fp16",
) -> None:
    """Causal attention for sequences first_seq..first_seq+num_seqs-1 of q [T, Hq, D] into out;
    a float8 cache is read as stored value x ``k_scale`` / ``v_scale``, its tiles widened to
    float16 (``fp8_dot="fp16"``: one conversion per two values; q scaled per row by a power of two
    into float16's range, as in the decode kernels) or to q's dtype (``"q"``)."""
    if fp8_dot not in ("fp16", "q"):
        raise ValueError(f"fp8_dot must be 'fp16' or 'q', got {fp8_dot!r}")
    if num_seqs == 0 or max_query_len == 0:
        return
    num_heads, head_dim = q.shape[1], q.shape[2]
    cfg = config or default_config(q, max_query_len)
    grid = (num_heads, triton.cdiv(max_query_len, cfg.block_m), num_seqs)
    extend_kernel[grid](
        q, k_cache, v_cache, block_tables, context_lens, cu_seqlens_q, out,
        scale * k_scale * LOG2E, v_scale, q.stride(0), q.stride(1),
        *cache_strides(k_cache, v_cache),
        block_tables.stride(0), out.stride(0), out.stride(1),
        first_seq,
        GROUP=num_heads // k_cache.shape[2],
        HEAD_DIM=head_dim,
        PAGE=k_cache.shape[1],
        BLOCK_M=cfg.block_m,
        BLOCK_N=cfg.block_n,
        STAGES=cfg.stages,
        PRECISION="ieee" if q.element_size() >= 4 else "tf32",
        FP16_DOTS=k_cache.dtype == torch.float8_e4m3fn and fp8_dot == "fp16",
        num_warps=cfg.num_warps,
    )  # fmt: skip
