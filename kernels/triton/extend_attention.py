"""Paged prefill / extend attention: a chunk of queries attends causally over its cached prefix.

Sequence ``s`` owns query rows ``cu_seqlens_q[s]:cu_seqlens_q[s+1]`` whose keys and values are
already in the cache; query row ``j`` sits at position ``context_len - q_len + j``. One program
handles BLOCK_M query rows of one head; the grid is sized by the host int ``max_query_len``.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

from kernels.triton.paged_common import (
    LOG2E,
    cache_strides,
    finish,
    load_kv,
    page_id,
    softmax_step,
    store_rows,
)


@triton.jit
def extend_kernel(
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, cu_seqlens_q_ptr, out_ptr,
    scale_log2,
    v_scale, stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs,
    stride_vh, stride_bt, stride_ot, stride_oh, first_seq, GROUP: tl.constexpr,
    HEAD_DIM: tl.constexpr, PAGE: tl.constexpr, BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr,
    STAGES: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    m_block = tl.program_id(0)
    seq = first_seq + tl.program_id(1)
    head = tl.program_id(2)
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
        m_i = tl.full([BLOCK_M], float("-inf"), tl.float32)
        l_i = tl.zeros([BLOCK_M], tl.float32)
        acc = tl.zeros([BLOCK_M, HEAD_DIM], tl.float32)
        table = block_tables_ptr + seq.to(tl.int64) * stride_bt
        end = tl.minimum(ctx, ctx - q_len + (m_block + 1) * BLOCK_M)  # causal bound of the block
        # page ids are fetched one step ahead: K/V addresses then come from a loop-carried value,
        # which lets Triton's pipeliner stream K/V through shared memory (cp.async, STAGES deep)
        next_page = page_id(table, tl.arange(0, BLOCK_N), end, PAGE)
        for n0 in tl.range(0, end, BLOCK_N, num_stages=STAGES):
            offs = n0 + tl.arange(0, BLOCK_N)  # [N]
            valid = offs < end
            page = next_page
            next_page = page_id(table, offs + BLOCK_N, end, PAGE)
            k, v = load_kv(k_cache_ptr, v_cache_ptr, page, offs, valid, kvh, cols, stride_kb,
                           stride_ks, stride_kh, stride_vb, stride_vs, stride_vh, PAGE)  # fmt: skip
            # a float8 cache is widened to q's dtype here; its scales are applied outside the loop
            k, v = k.to(q_ptr.dtype.element_ty), v.to(q_ptr.dtype.element_ty)
            causal = valid[None, :] & (offs[None, :] <= q_pos[:, None])  # [M, N]
            m_i, l_i, acc = softmax_step(q, k, v, causal, m_i, l_i, acc, scale_log2, PRECISION)
        result, _ = finish(acc * v_scale, l_i, m_i)  # every row sees key 0, so l_i > 0
        store_rows(out_ptr, tok * stride_ot + head * stride_oh, cols, result, row_mask)


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
) -> None:
    """Causal attention for sequences first_seq..first_seq+num_seqs-1 of q [T, Hq, D] into out;
    a float8 cache is read as stored value x ``k_scale`` / ``v_scale``."""
    if num_seqs == 0 or max_query_len == 0:
        return
    num_heads, head_dim = q.shape[1], q.shape[2]
    wide = q.element_size() >= 4
    block_m = 32 if wide or max_query_len <= 32 else 64
    grid = (triton.cdiv(max_query_len, block_m), num_seqs, num_heads)
    extend_kernel[grid](
        q, k_cache, v_cache, block_tables, context_lens, cu_seqlens_q, out,
        scale * k_scale * LOG2E, v_scale, q.stride(0), q.stride(1),
        *cache_strides(k_cache, v_cache),
        block_tables.stride(0), out.stride(0), out.stride(1),
        first_seq,
        GROUP=num_heads // k_cache.shape[2],
        HEAD_DIM=head_dim,
        PAGE=k_cache.shape[1],
        BLOCK_M=block_m,
        BLOCK_N=32 if wide else 64,
        STAGES=2,
        PRECISION="ieee" if wide else "tf32",
        num_warps=4,
    )  # fmt: skip
