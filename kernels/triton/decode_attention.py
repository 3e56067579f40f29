"""Paged decode attention (one query token per sequence), GQA, split-KV, optionally persistent.

Work items are (sequence, kv head, KV split). Each item handles the whole GQA group of its kv head
(the group padded to 16 rows for ``tl.dot``), so every K/V byte is read once. With ``num_sms`` the
grid is a persistent one of ``num_sms * ctas_per_sm`` programs that stride over the items: the
kernel then occupies no more than the SM budget it is given. Splits (> 1) write float32 partials
and their log-sum-exp, merged by a second small kernel.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import torch
import triton
import triton.language as tl

LOG2E = 1.4426950408889634
MIN_SPLIT_LEN = 256  # tokens; shorter splits cost more in merging than they gain in parallelism
MAX_SPLITS = 32


@dataclass(frozen=True)
class DecodeConfig:
    block_n: int = 64  # KV tokens per inner step
    num_warps: int = 4
    num_stages: int = 4
    ctas_per_sm: int = 4  # persistent programs per SM
    swap_ab: bool = False  # KV tile as the MMA's M dimension (wgmma on Hopper)
    tma: bool = False  # pages fetched by TMA copies (decode_attention_tma; Hopper, 16-bit caches)


@triton.jit
def _update(q, k, v, valid, m_i, l_i, acc, scale_log2, PRECISION: tl.constexpr):
    """Online-softmax step with the GQA group as the MMA's M: q [G, D], k/v [N, D], acc [G, D]."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2  # [G, N]
    s = tl.where(valid[None, :], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def _update_swapped(q, k, v, valid, m_i, l_i, acc, scale_log2, PRECISION: tl.constexpr):
    """The same step transposed, so the KV tile is the MMA's M (64+ rows, Hopper wgmma):
    s^T = k q^T [N, G], acc^T [D, G] += v^T p^T."""
    s = tl.dot(k, tl.trans(q), input_precision=PRECISION) * scale_log2  # [N, G]
    s = tl.where(valid[:, None], s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 0))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[None, :])
    l_i = l_i * alpha + tl.sum(p, 0)
    acc = acc * alpha[None, :] + tl.dot(tl.trans(v), p.to(v.dtype), input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def decode_kernel(
    q_ptr,
    k_cache_ptr,
    v_cache_ptr,
    block_tables_ptr,
    context_lens_ptr,
    out_ptr,
    part_out_ptr,
    part_lse_ptr,
    scale_log2,
    stride_qt,
    stride_qh,
    stride_kb,
    stride_ks,
    stride_kh,
    stride_vb,
    stride_vs,
    stride_vh,
    stride_bt,
    stride_ot,
    stride_oh,
    num_seqs,
    num_kv_heads,
    num_splits,
    split_len,
    num_programs,
    GROUP: tl.constexpr,
    GROUP_PAD: tl.constexpr,
    HEAD_DIM: tl.constexpr,
    PAGE: tl.constexpr,
    BLOCK_N: tl.constexpr,
    SPLIT: tl.constexpr,
    STAGES: tl.constexpr,
    PRECISION: tl.constexpr,
    SWAP_AB: tl.constexpr,
):
    rows = tl.arange(0, GROUP_PAD)  # [G]
    cols = tl.arange(0, HEAD_DIM)  # [D]
    row_mask = rows < GROUP
    num_items = num_seqs * num_kv_heads * num_splits
    for item in range(tl.program_id(0), num_items, num_programs):
        split = item % num_splits
        kvh = (item // num_splits) % num_kv_heads
        seq = item // (num_splits * num_kv_heads)
        ctx = tl.load(context_lens_ptr + seq)
        start = split * split_len
        end = tl.minimum(ctx, start + split_len)
        heads = kvh * GROUP + rows
        q = tl.load(
            q_ptr + seq.to(tl.int64) * stride_qt + heads[:, None] * stride_qh + cols[None, :],
            mask=row_mask[:, None],
            other=0.0,
        )  # [G, D]
        m_i = tl.full([GROUP_PAD], float("-inf"), tl.float32)
        l_i = tl.zeros([GROUP_PAD], tl.float32)
        if SWAP_AB:
            acc = tl.zeros([HEAD_DIM, GROUP_PAD], tl.float32)  # transposed: [D, G]
        else:
            acc = tl.zeros([GROUP_PAD, HEAD_DIM], tl.float32)
        table = block_tables_ptr + seq.to(tl.int64) * stride_bt
        # page ids are fetched one step ahead: K/V addresses then come from a loop-carried value,
        # which lets Triton's pipeliner stream K/V through shared memory (cp.async, STAGES deep)
        first = start + tl.arange(0, BLOCK_N)
        next_page = tl.load(table + first // PAGE, mask=first < end, other=0)
        for n0 in tl.range(start, end, BLOCK_N, num_stages=STAGES):
            offs = n0 + tl.arange(0, BLOCK_N)  # [N]
            valid = offs < end
            page = next_page.to(tl.int64)
            ahead = offs + BLOCK_N
            next_page = tl.load(table + ahead // PAGE, mask=ahead < end, other=0)
            k_off = page * stride_kb + (offs % PAGE) * stride_ks + kvh * stride_kh
            v_off = page * stride_vb + (offs % PAGE) * stride_vs + kvh * stride_vh
            k = tl.load(
                k_cache_ptr + k_off[:, None] + cols[None, :], mask=valid[:, None], other=0.0
            )
            v = tl.load(
                v_cache_ptr + v_off[:, None] + cols[None, :], mask=valid[:, None], other=0.0
            )
            if SWAP_AB:
                m_i, l_i, acc = _update_swapped(q, k, v, valid, m_i, l_i, acc, scale_log2,
                                                PRECISION)  # fmt: skip
            else:
                m_i, l_i, acc = _update(q, k, v, valid, m_i, l_i, acc, scale_log2, PRECISION)
        if SWAP_AB:
            acc = tl.trans(acc)
        safe_l = tl.where(l_i > 0, l_i, 1.0)
        result = acc / safe_l[:, None]  # [G, D]; zeros for an empty split
        if SPLIT:
            part = (seq * num_kv_heads * GROUP + heads).to(tl.int64) * num_splits + split
            tl.store(part_out_ptr + part[:, None] * HEAD_DIM + cols[None, :], result,
                     mask=row_mask[:, None])  # fmt: skip
            lse = tl.where(l_i > 0, m_i + tl.log2(safe_l), float("-inf"))  # base 2
            tl.store(part_lse_ptr + part, lse, mask=row_mask)
        else:
            dst = out_ptr + seq.to(tl.int64) * stride_ot + heads[:, None] * stride_oh
            tl.store(dst + cols[None, :], result.to(out_ptr.dtype.element_ty),
                     mask=row_mask[:, None])  # fmt: skip


@triton.jit
def merge_splits_kernel(
    part_out_ptr,
    part_lse_ptr,
    out_ptr,
    stride_ot,
    stride_oh,
    num_heads,
    num_splits,
    HEAD_DIM: tl.constexpr,
    SPLITS_PAD: tl.constexpr,
):
    seq = tl.program_id(0).to(tl.int64)
    head = tl.program_id(1)
    splits = tl.arange(0, SPLITS_PAD)  # [S]
    cols = tl.arange(0, HEAD_DIM)  # [D]
    mask = splits < num_splits
    base = (seq * num_heads + head) * num_splits
    lse = tl.load(part_lse_ptr + base + splits, mask=mask, other=float("-inf"))
    weight = tl.exp2(lse - tl.max(lse, 0))  # [S]; split 0 is never empty, so the max is finite
    part = tl.load(part_out_ptr + (base + splits)[:, None] * HEAD_DIM + cols[None, :],
                   mask=mask[:, None], other=0.0)  # fmt: skip
    merged = tl.sum(part * weight[:, None], 0) / tl.sum(weight, 0)
    dst = out_ptr + seq * stride_ot + head * stride_oh + cols
    tl.store(dst, merged.to(out_ptr.dtype.element_ty))


@cache
def device_sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 8  # Triton's CPU interpreter: any small count exercises the split path
    return torch.cuda.get_device_properties(device).multi_processor_count


def plan_splits(items: int, max_context_len: int, num_sms: int, block_n: int) -> tuple[int, int]:
    """(num_splits, split_len): split long contexts until there are about 2 items per SM."""
    target = 2 * num_sms
    splits = 1
    if items < target:
        by_len = max(max_context_len // MIN_SPLIT_LEN, 1)
        splits = min(triton.cdiv(target, max(items, 1)), by_len, MAX_SPLITS)
    split_len = triton.cdiv(triton.cdiv(max(max_context_len, 1), splits), block_n) * block_n
    return triton.cdiv(max(max_context_len, 1), split_len), split_len


@dataclass(frozen=True)
class LaunchGrid:
    """How one decode call is spread: KV splits, persistent programs, and the float32 partial
    outputs / log-sum-exps that a split launch writes (``out`` itself when unsplit)."""

    num_splits: int
    split_len: int
    programs: int
    part_out: torch.Tensor
    part_lse: torch.Tensor

    @property
    def split(self) -> bool:
        return self.num_splits > 1


def launch_grid(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    max_context_len: int,
    num_sms: int | None,
    cfg: DecodeConfig,
    out: torch.Tensor,
) -> LaunchGrid:
    """Splits sized to the SM budget (or the device), programs for a persistent or full grid."""
    num_seqs, num_heads, head_dim = q.shape
    items = num_seqs * k_cache.shape[2]
    sms = num_sms or device_sm_count(q.device)
    num_splits, split_len = plan_splits(items, max_context_len, sms, cfg.block_n)
    items *= num_splits
    programs = items if num_sms is None else min(items, num_sms * cfg.ctas_per_sm)
    part_out = part_lse = out
    if num_splits > 1:
        shape = (num_seqs, num_heads, num_splits)
        part_out = torch.empty((*shape, head_dim), dtype=torch.float32, device=q.device)
        part_lse = torch.empty(shape, dtype=torch.float32, device=q.device)
    return LaunchGrid(num_splits, split_len, programs, part_out, part_lse)


def merge_splits(grid: LaunchGrid, out: torch.Tensor) -> None:
    """Combine a split launch's partial outputs into ``out`` (nothing to do when unsplit)."""
    if not grid.split:
        return
    num_seqs, num_heads, num_splits, head_dim = grid.part_out.shape
    merge_splits_kernel[(num_seqs, num_heads)](
        grid.part_out, grid.part_lse, out, out.stride(0), out.stride(1), num_heads, num_splits,
        HEAD_DIM=head_dim, SPLITS_PAD=triton.next_power_of_2(num_splits), num_warps=4,
    )  # fmt: skip


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
) -> None:
    """Decode attention of q [B, Hq, D] over caches [blocks, page, Hk, D] into out [B, Hq, D].

    ``num_sms`` sizes a persistent grid to that many SMs; None gives one program per work item.
    No host syncs: the grid depends only on shapes and ``max_context_len``.
    """
    cfg = config or DecodeConfig()
    if q.shape[0] == 0:
        return
    grid = launch_grid(q, k_cache, max_context_len, num_sms, cfg, out)
    num_seqs, num_heads, head_dim = q.shape
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    group = num_heads // num_kv_heads
    decode_kernel[(grid.programs,)](
        q, k_cache, v_cache, block_tables, context_lens, out, grid.part_out, grid.part_lse,
        scale * LOG2E,
        q.stride(0), q.stride(1),
        k_cache.stride(0), k_cache.stride(1), k_cache.stride(2),
        v_cache.stride(0), v_cache.stride(1), v_cache.stride(2),
        block_tables.stride(0), out.stride(0), out.stride(1),
        num_seqs, num_kv_heads, grid.num_splits, grid.split_len, grid.programs,
        GROUP=group,
        GROUP_PAD=max(16, triton.next_power_of_2(group)),
        HEAD_DIM=head_dim,
        PAGE=page,
        BLOCK_N=cfg.block_n,
        SPLIT=grid.split,
        STAGES=cfg.num_stages if q.element_size() < 4 else 2,  # float32 tiles: less smem
        PRECISION="ieee" if q.dtype == torch.float32 else "tf32",
        SWAP_AB=cfg.swap_ab,
        num_warps=cfg.num_warps,
    )  # fmt: skip
    merge_splits(grid, out)
