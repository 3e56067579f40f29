"""What the three paged-attention kernels share (gather decode, TMA decode, extend).

Device side: the page id of a KV position, the gather of one K/V tile from the paged caches, the
online-softmax step (any mask: a decode's valid columns, an extend's causal triangle), and the
epilogue (normalise, then store rows into ``out``, or a split's partial output and log-sum-exp).
Host side: the cache strides every gather kernel takes in the same order, and the decode launch
plan (KV splits, persistent programs, partial buffers) with the merge of split partials.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cache

import torch
import triton
import triton.language as tl

from kernels.triton.pdl import launch_options, use_pdl

LOG2E = 1.4426950408889634
MIN_SPLIT_LEN = 256  # tokens; shorter splits cost more in merging than they gain in parallelism
MAX_SPLITS = 32
# a decode launch's SPLIT argument: unsplit, or how each sequence's context is cut into splits
SPLIT_NONE: tl.constexpr = tl.constexpr(0)
SPLIT_BY_PLAN: tl.constexpr = tl.constexpr(1)  # pieces of the plan's split_len (before 2026-12-01)
SPLIT_BY_CONTEXT: tl.constexpr = tl.constexpr(2)  # each context in num_splits pieces (the default)
# pieces of about one length for every sequence of the launch (``length_chunk``): a long context
# gets more of its splits than a short one, so the launch's items are of about equal work
SPLIT_BY_LENGTH: tl.constexpr = tl.constexpr(3)
# NANOLANG_KV_SPLITS=plan brings the old cut back, =length the cut by length; for A/B runs in
# separate processes
KV_SPLITS_ENV = "NANOLANG_KV_SPLITS"
KV_SPLIT_CUTS = ("context", "plan", "length")
# under the cut by length, each sequence may take up to this many times the splits the uniform
# plan gives it (a context longer than that many times the batch's mean share gets longer pieces)
LENGTH_SPLITS_HEADROOM = 3
SUM_BLOCK: tl.constexpr = tl.constexpr(128)  # context lengths summed per load in length_chunk
# NANOLANG_KV_SPLIT_TARGET: items per SM a decode launch's split plan aims for (a positive
# integer; 2 unless set), or "kernel": each whole-GPU launch its kernel's own target (below)
KV_SPLIT_TARGET_ENV = "NANOLANG_KV_SPLIT_TARGET"
DEFAULT_SPLIT_TARGET = 2
# Per-kernel targets for whole-GPU launches (one program per item), opt-in ("kernel"). Measured
# alone (H200, Llama-3-8B's heads, 1-128 sequences of equal 384- and 1,024-token contexts planned
# for 8,192 as under the engine's CUDA graphs, 32 layers per graph; bench/split_target_probe.py,
# bench/results/2026-12-01-h200-split-target-probe.json): the gather kernel at 1 (over 17-32
# sequences 2 took 14-46% longer); the TMA kernel at 4 while the batch alone gives fewer than 2
# items per SM (over 4-32 sequences 2 took 3-23% longer) and at 2 beyond. In the engine
# (env_ab, 256 requests, 2026-12-01, ...-split-target-per-kernel-ab.json) "kernel" against 2:
# ShareGPT-like 1.003x, LMSYS-like 1.005x, Splitwise-like 0.994x, whose ragged long contexts
# need the gather kernel's splits (its 17-32-sequence steps 6.52 -> 7.56 ms): not the default.
GATHER_SPLIT_TARGET = 1
TMA_SPLIT_TARGET = 4
# NANOLANG_KV_ORDER: "longest" (the default since 2026-12-01: Splitwise-like 1.028x, ShareGPT-like
# 1.005x, LMSYS-like 0.998x) hands a decode launch's work items out longest context first (the
# Triton backend sorts the rows once per batch); "batch" in the batch's order
KV_ORDER_ENV = "NANOLANG_KV_ORDER"
# Triton compiles a kernel once per specialisation of its integer arguments (equal to 1, a
# multiple of 16, or neither): arguments that change from one batch to the next (the block
# table's width, the batch's sizes and splits) are left unspecialised, so the first iterations
# of a run compile nothing new (a fresh cache compiled 24 variants, 1.7 s in the timed run)
PER_BATCH_ARGS = ["stride_bt", "num_seqs", "num_splits", "split_len", "num_programs"]


@triton.jit
def page_id(table, pos, end, PAGE: tl.constexpr):
    """Id of the page holding each KV position of ``pos`` (0 past ``end``)."""
    return tl.load(table + pos // PAGE, mask=pos < end, other=0)


@triton.jit
def load_kv(k_cache_ptr, v_cache_ptr, page, offs, valid, kvh, cols, stride_kb, stride_ks, stride_kh,
            stride_vb, stride_vs, stride_vh, PAGE: tl.constexpr, EVICT: tl.constexpr):  # fmt: skip
    """K and V [N, D] of KV positions ``offs`` (on pages ``page``) of kv head ``kvh``. EVICT: the
    loads' L2 eviction policy ("" the default; "evict_first" for a stream read once, so that it
    does not push out what a kernel beside it reuses from L2)."""
    page = page.to(tl.int64)
    k_off = page * stride_kb + (offs % PAGE) * stride_ks + kvh * stride_kh
    v_off = page * stride_vb + (offs % PAGE) * stride_vs + kvh * stride_vh
    k = tl.load(k_cache_ptr + k_off[:, None] + cols[None, :], mask=valid[:, None], other=0.0,
                eviction_policy=EVICT)  # fmt: skip
    v = tl.load(v_cache_ptr + v_off[:, None] + cols[None, :], mask=valid[:, None], other=0.0,
                eviction_policy=EVICT)  # fmt: skip
    return k, v


@triton.jit
def fp16_rows(q):
    """q [M, D] as float16 dot operands: each row times a power of two that puts its largest
    |value| in [256, 512), and the inverse powers [M] (float32) to fold into the score scale.

    Powers of two are exact, so the only rounding is float16's (11 significant bits, at least
    bfloat16's 8) on values in float16's normal range: a row cannot overflow (65504) however
    large, and loses only entries below 2^-23 of its largest. The exponents are set from the bits
    of the row maxima (clamped so both powers stay normal float32 numbers)."""
    wide = q.to(tl.float32)
    amax = tl.max(tl.abs(wide), 1)
    exponent = (amax.to(tl.int32, bitcast=True) >> 23) & 0xFF  # biased; amax = 1.x * 2^(e-127)
    exponent = tl.minimum(tl.maximum(exponent, 9), 254)
    up = ((262 - exponent) << 23).to(tl.float32, bitcast=True)  # 2^(135 - e)
    down = ((exponent - 8) << 23).to(tl.float32, bitcast=True)  # 2^(e - 135)
    return (wide * up[:, None]).to(tl.float16), down


@triton.jit
def fp8_rows(q):
    """q [M, D] quantised to float8 e4m3 per row (its largest |value| to 448, the format's
    largest), and the row scales [M] (float32; 1 for a row of zeros) that undo it."""
    wide = q.to(tl.float32)
    amax = tl.max(tl.abs(wide), 1)
    scale = tl.where(amax > 0, amax / 448.0, 1.0)
    return (wide * (1.0 / scale)[:, None]).to(tl.float8e4nv), scale


@triton.jit
def softmax_step(q, k, v, mask, m_i, l_i, acc, scale_log2, PRECISION: tl.constexpr):
    """One online-softmax step: q [M, D] against k / v [N, D], scores outside ``mask`` [M or 1,
    N] dropped; running max m_i [M], sum l_i [M] and acc [M, D] (base-2 exponentials).
    ``scale_log2``: a scalar, or one per row ([M, 1], see ``fp16_rows``)."""
    s = tl.dot(q, tl.trans(k), input_precision=PRECISION) * scale_log2  # [M, N]
    s = tl.where(mask, s, float("-inf"))
    m_new = tl.maximum(m_i, tl.max(s, 1))
    alpha = tl.exp2(m_i - m_new)
    p = tl.exp2(s - m_new[:, None])
    l_i = l_i * alpha + tl.sum(p, 1)
    acc = acc * alpha[:, None] + tl.dot(p.to(v.dtype), v, input_precision=PRECISION)
    return m_new, l_i, acc


@triton.jit
def finish(acc, l_i, m_i):
    """Normalised rows [M, D] (zeros where nothing was attended) and their log2-sum-exp [M]."""
    safe_l = tl.where(l_i > 0, l_i, 1.0)
    lse = tl.where(l_i > 0, m_i + tl.log2(safe_l), float("-inf"))
    return acc / safe_l[:, None], lse


@triton.jit
def length_chunk(context_lens_ptr, num_seqs, split_share, BLOCK: tl.constexpr,
                 SPLIT: tl.constexpr):  # fmt: skip
    """Under SPLIT_BY_LENGTH, the split length (whole BLOCKs) that cuts the launch's contexts,
    all ``num_seqs`` of them together, into about ``split_share`` pieces; else 0. Computed by
    every program from the context lengths (a CUDA graph's launch arguments are fixed)."""
    chunk = 0
    if SPLIT == SPLIT_BY_LENGTH:
        total = tl.full([], 0, tl.int32)
        for s0 in range(0, num_seqs, SUM_BLOCK):
            offs = s0 + tl.arange(0, SUM_BLOCK)
            total += tl.sum(tl.load(context_lens_ptr + offs, mask=offs < num_seqs, other=0), 0)
        chunk = tl.cdiv(tl.cdiv(total, split_share), BLOCK) * BLOCK
    return chunk


@triton.jit
def split_bounds(ctx, split, num_splits, split_len, chunk, BLOCK: tl.constexpr,
                 SPLIT: tl.constexpr):  # fmt: skip
    """[start, end) of a work item's KV split. With SPLIT == SPLIT_BY_CONTEXT each sequence's
    own context is cut into ``num_splits`` pieces of whole BLOCKs, none longer than
    ``split_len``: a CUDA graph plans its splits for the longest possible context
    (``max_model_len``), so cutting by ``split_len`` alone (SPLIT_BY_PLAN, the cut before
    2026-12-01) left most splits of a shorter context empty and the rest long (3 sequences of
    about 1,400 tokens under an 8,192-token plan: 2 of 11 splits busy per head). With
    SPLIT_BY_LENGTH the pieces are ``chunk`` long (``length_chunk``), or longer where
    ``num_splits`` of them would not cover the context; the splits past its end are empty."""
    if SPLIT == SPLIT_BY_PLAN:
        length = split_len
    elif SPLIT == SPLIT_BY_LENGTH:
        length = tl.maximum(tl.cdiv(tl.cdiv(ctx, num_splits), BLOCK) * BLOCK, chunk)
    else:
        own = tl.cdiv(tl.cdiv(ctx, num_splits), BLOCK) * BLOCK
        length = tl.minimum(split_len, own)
    start = split * length
    return start, tl.minimum(ctx, start + length)


@triton.jit
def store_rows(out_ptr, row_offsets, cols, result, mask):
    """result [M, D] into ``out`` at element offsets row_offsets [M] (int64), rows in ``mask``."""
    dst = out_ptr + row_offsets[:, None] + cols[None, :]
    tl.store(dst, result.to(out_ptr.dtype.element_ty), mask=mask[:, None])


@triton.jit
def store_decode(acc, l_i, m_i, out_ptr, part_out_ptr, part_lse_ptr, seq, heads, split,
                 num_heads, num_splits, stride_ot, stride_oh, cols, row_mask,
                 HEAD_DIM: tl.constexpr, SPLIT: tl.constexpr):  # fmt: skip
    """A decode work item's epilogue: its heads' rows into ``out``, or its split's partial."""
    result, lse = finish(acc, l_i, m_i)
    if SPLIT:
        part = (seq * num_heads + heads).to(tl.int64) * num_splits + split
        store_rows(part_out_ptr, part * HEAD_DIM, cols, result, row_mask)
        tl.store(part_lse_ptr + part, lse, mask=row_mask)
    else:
        store_rows(out_ptr, seq.to(tl.int64) * stride_ot + heads * stride_oh, cols, result,
                   row_mask)  # fmt: skip


@triton.jit(do_not_specialize=["num_splits"])
def merge_splits_kernel(
    part_out_ptr, part_lse_ptr, out_ptr, stride_ot, stride_oh, num_heads, num_splits,
    HEAD_DIM: tl.constexpr, SPLITS_PAD: tl.constexpr, USE_PDL: tl.constexpr,
):  # fmt: skip
    if USE_PDL:  # wait for the kernel before (launched early: kernels.triton.pdl)
        tl.extra.cuda.gdc_wait()
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


def cache_strides(k_cache: torch.Tensor, v_cache: torch.Tensor) -> tuple[int, ...]:
    """(stride_kb, stride_ks, stride_kh, stride_vb, stride_vs, stride_vh): the order every
    gather kernel takes them in."""
    return (*k_cache.stride()[:3], *v_cache.stride()[:3])


@cache
def device_sm_count(device: torch.device) -> int:
    if device.type != "cuda":
        return 8  # Triton's CPU interpreter: any small count exercises the split path
    return torch.cuda.get_device_properties(device).multi_processor_count


def kv_order() -> str:
    """``longest`` (default) or ``batch``, from NANOLANG_KV_ORDER; anything else is refused."""
    order = os.environ.get(KV_ORDER_ENV, "longest")
    if order not in ("batch", "longest"):
        raise ValueError(f"{KV_ORDER_ENV}={order!r}: choose batch or longest")
    return order


def split_target(own: int = DEFAULT_SPLIT_TARGET) -> int:
    """Work items per SM a split plan aims for: NANOLANG_KV_SPLIT_TARGET's (a positive integer;
    2 unless set), or the launch's ``own`` target where it says "kernel"."""
    text = os.environ.get(KV_SPLIT_TARGET_ENV, str(DEFAULT_SPLIT_TARGET))
    if text == "kernel":
        return own
    if not text.isdigit() or int(text) < 1:
        raise ValueError(
            f"{KV_SPLIT_TARGET_ENV}={text!r}: a positive integer (items per SM) or 'kernel'"
        )
    return int(text)


def whole_gpu_split_target(kernel: str, items: int, num_sms: int) -> int:
    """A whole-GPU decode launch's own split target (items per SM; see GATHER_SPLIT_TARGET):
    ``kernel`` "gather" or "tma", ``items`` its (sequence, kv head) pairs."""
    if kernel == "gather":
        return GATHER_SPLIT_TARGET
    if kernel == "tma":
        return TMA_SPLIT_TARGET if items < DEFAULT_SPLIT_TARGET * num_sms else DEFAULT_SPLIT_TARGET
    raise ValueError(f"kernel must be 'gather' or 'tma', got {kernel!r}")


def plan_splits(
    items: int, max_context_len: int, num_sms: int, block_n: int,
    own_target: int = DEFAULT_SPLIT_TARGET, headroom: int = 1,
) -> tuple[int, int]:  # fmt: skip
    """(num_splits, split_len): split long contexts until there are about ``split_target``
    items per SM (2, or ``own_target`` under NANOLANG_KV_SPLIT_TARGET=kernel); ``headroom``
    times as many splits (the cut by length's room for contexts longer than the mean)."""
    target = split_target(own_target) * num_sms
    splits = 1
    if items < target:
        by_len = max(max_context_len // MIN_SPLIT_LEN, 1)
        splits = min(triton.cdiv(target, max(items, 1)), by_len, MAX_SPLITS)
        if splits > 1:
            by_block = triton.cdiv(max(max_context_len, 1), block_n)
            splits = min(splits * headroom, by_block, MAX_SPLITS)
    split_len = triton.cdiv(triton.cdiv(max(max_context_len, 1), splits), block_n) * block_n
    return triton.cdiv(max(max_context_len, 1), split_len), split_len


@dataclass(frozen=True)
class LaunchGrid:
    """How one decode call is spread: KV splits, persistent programs, and the float32 partial
    outputs / log-sum-exps that a split launch writes (``out`` itself when unsplit)."""

    num_splits: int
    split_len: int
    # under the cut by length: the pieces (per kv head) the batch's contexts are cut into, the
    # uniform plan's count (its splits times the sequences)
    split_share: int
    programs: int
    part_out: torch.Tensor
    part_lse: torch.Tensor

    @property
    def split(self) -> bool:
        return self.num_splits > 1

    @property
    def split_kind(self) -> int:
        """The kernels' SPLIT argument: SPLIT_NONE, or how contexts are cut (``split_cut``)."""
        if not self.split:
            return SPLIT_NONE.value
        kinds = {"plan": SPLIT_BY_PLAN, "context": SPLIT_BY_CONTEXT, "length": SPLIT_BY_LENGTH}
        return kinds[split_cut()].value


def split_cut() -> str:
    """``context`` (default), ``plan`` or ``length``, from NANOLANG_KV_SPLITS; anything else is
    refused."""
    cut = os.environ.get(KV_SPLITS_ENV, "context")
    if cut not in KV_SPLIT_CUTS:
        raise ValueError(f"{KV_SPLITS_ENV}={cut!r}: choose {', '.join(KV_SPLIT_CUTS)}")
    return cut


def launch_grid(
    q: torch.Tensor,
    k_cache: torch.Tensor,
    max_context_len: int,
    num_sms: int | None,
    block_n: int,
    ctas_per_sm: int,
    out: torch.Tensor,
    whole_gpu_kernel: str | None = None,
) -> LaunchGrid:
    """Splits sized to the SM budget (or the device), programs for a persistent or full grid.
    ``whole_gpu_kernel`` ("gather" or "tma"): under NANOLANG_KV_SPLIT_TARGET=kernel, a launch
    with one program per item (``num_sms`` None) plans for that kernel's own split target
    (``whole_gpu_split_target``)."""
    num_seqs, num_heads, head_dim = q.shape
    items = num_seqs * k_cache.shape[2]
    sms = num_sms or device_sm_count(q.device)
    own = DEFAULT_SPLIT_TARGET
    if num_sms is None and whole_gpu_kernel is not None:
        own = whole_gpu_split_target(whole_gpu_kernel, items, sms)
    num_splits, split_len = plan_splits(items, max_context_len, sms, block_n, own)
    split_share = 0
    if split_cut() == "length" and num_splits > 1:
        # as many pieces as the cut by context makes, of one length whatever the context
        split_share = num_seqs * num_splits
        num_splits, split_len = plan_splits(items, max_context_len, sms, block_n, own,
                                            LENGTH_SPLITS_HEADROOM)  # fmt: skip
    items *= num_splits
    programs = items if num_sms is None else min(items, num_sms * ctas_per_sm)
    part_out = part_lse = out
    if num_splits > 1:
        shape = (num_seqs, num_heads, num_splits)
        part_out = torch.empty((*shape, head_dim), dtype=torch.float32, device=q.device)
        part_lse = torch.empty(shape, dtype=torch.float32, device=q.device)
    return LaunchGrid(num_splits, split_len, split_share, programs, part_out, part_lse)


MERGE_PAD = triton.next_power_of_2(MAX_SPLITS)  # one merge kernel for every split count


def merge_splits(grid: LaunchGrid, out: torch.Tensor) -> None:
    """Combine a split launch's partial outputs into ``out`` (nothing to do when unsplit)."""
    if not grid.split:
        return
    num_seqs, num_heads, num_splits, head_dim = grid.part_out.shape
    pdl = use_pdl(out)
    merge_splits_kernel[(num_seqs, num_heads)](
        grid.part_out, grid.part_lse, out, out.stride(0), out.stride(1), num_heads, num_splits,
        HEAD_DIM=head_dim, SPLITS_PAD=MERGE_PAD, USE_PDL=pdl, num_warps=4, **launch_options(pdl),
    )  # fmt: skip
