"""One launch that runs a GEMM and decode attention side by side on the same SMs.

NanoFlow overlaps one nano-batch's GEMMs with another's decode attention on disjoint SM
partitions (green contexts, or CTA-capped kernels on two streams). On the H200 that has not paid
(docs/performance.md): on a partition each side runs slower than its SM share, cuBLAS's GEMMs
take every SM's shared memory so attention's programs on a second stream wait for them, and over
an fp8 cache both sides are bound on the SMs, so dividing the SMs divides both. Inside one SM the
two lean on different units: the GEMM on the tensor cores, the attention on the memory pipes and
the CUDA cores (the fp8 widening, the softmax). This launch gives them the same SMs instead of
disjoint ones. Its first ``gemm_programs`` programs compute output tiles of ``y = x @ w^T``, each
striding over the tiles (persistent); the other ``attn_programs`` run the decode attention's work
items with the decode kernel's own code (``decode_attention.decode_items``), striding the same
way. With as many programs of each role as SMs and tiles small enough for two programs per SM,
the CTA scheduler's first wave puts one of each on every SM (the first SM-count programs, then
the next); ``bench/gemm_beside_attention.py`` measures whether that beats the two kernels one
after the other and on two streams.

Attention as the decode kernel runs it (gather of pages, GQA, split-KV with the merge launched
after, fp8 caches with their scales), without TMA page copies. The GEMM: 16-bit or float32 rows
of any length, row-major, no bias.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch
import triton
import triton.language as tl

from kernels.triton.decode_attention import P_SCALE, DecodeConfig, decode_items, dot_dtype
from kernels.triton.paged_common import (
    LOG2E,
    PER_BATCH_ARGS,
    cache_strides,
    launch_grid,
    merge_splits,
)


@dataclass(frozen=True)
class GemmConfig:
    """The GEMM role's tile: [block_m, block_n] outputs over block_k-deep steps, num_stages of
    them in flight. The default fits two programs per SM beside a decode program on an H200
    (128 x 128 x 64 bf16 x 2 stages: 64 KB of shared memory)."""

    block_m: int = 128
    block_n: int = 128
    block_k: int = 64
    num_stages: int = 2
    tma: bool = False  # operands by TMA copies (Hopper; 16-bit rows of 16-byte multiples)

    def __post_init__(self) -> None:
        for name in ("block_m", "block_n", "block_k"):
            v = getattr(self, name)
            if v < 16 or v & (v - 1):
                raise ValueError(f"{name} must be a power of two >= 16, got {v}")
        if self.num_stages < 1:
            raise ValueError(f"num_stages must be >= 1, got {self.num_stages}")

    def tiles(self, m: int, n: int) -> int:
        return triton.cdiv(m, self.block_m) * triton.cdiv(n, self.block_n)


@triton.jit
def _tile_by_pointers(
    x_ptr, w_ptr, y_ptr, rm, rn, M, N, K, stride_xm, stride_wn, stride_ym,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
    EVEN_K: tl.constexpr, PRECISION: tl.constexpr,
):  # fmt: skip
    """One output tile, rows ``rm`` x columns ``rn``, from masked loads (cp.async on Hopper)."""
    rk = tl.arange(0, BLOCK_K)
    x_rows = x_ptr + rm[:, None].to(tl.int64) * stride_xm
    w_rows = w_ptr + rn[:, None].to(tl.int64) * stride_wn
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        kk = k0 + rk
        if EVEN_K:
            x_mask = rm[:, None] < M
            w_mask = rn[:, None] < N
        else:
            x_mask = (rm[:, None] < M) & (kk[None, :] < K)
            w_mask = (rn[:, None] < N) & (kk[None, :] < K)
        a = tl.load(x_rows + kk[None, :], mask=x_mask, other=0.0)  # [BLOCK_M, BLOCK_K]
        b = tl.load(w_rows + kk[None, :], mask=w_mask, other=0.0)  # [BLOCK_N, BLOCK_K]
        acc = tl.dot(a, tl.trans(b), acc, input_precision=PRECISION)
    y = y_ptr + rm[:, None].to(tl.int64) * stride_ym + rn[None, :]
    tl.store(y, acc.to(y_ptr.dtype.element_ty), mask=(rm[:, None] < M) & (rn[None, :] < N))


@triton.jit
def _tile_by_tma(
    x_desc, w_desc, y_desc, off_m, off_n, K,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
    PRECISION: tl.constexpr,
):  # fmt: skip
    """One output tile from TMA copies (Hopper): rows and columns past the ends read as zeros
    and are dropped on the store, so no masks."""
    acc = tl.zeros((BLOCK_M, BLOCK_N), dtype=tl.float32)
    for k0 in tl.range(0, K, BLOCK_K, num_stages=STAGES):
        a = x_desc.load([off_m, k0])  # [BLOCK_M, BLOCK_K]
        b = w_desc.load([off_n, k0])  # [BLOCK_N, BLOCK_K]
        acc = tl.dot(a, b.T, acc, input_precision=PRECISION)
    y_desc.store([off_m, off_n], acc.to(y_desc.dtype))


@triton.jit
def gemm_tiles(
    first, stride, x_ref, w_ref, y_ref, M, N, K, stride_xm, stride_wn, stride_ym,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
    EVEN_K: tl.constexpr, PRECISION: tl.constexpr, TMA: tl.constexpr,
):  # fmt: skip
    """Output tiles ``first``, ``first + stride``, ... of y [M, N] = x [M, K] @ w [N, K]^T; the
    operands are pointers, or (TMA) tensor descriptors of x, w and y. Row tiles vary fastest, so
    the programs of one weight slice run side by side (one HBM read)."""
    tiles_m = tl.cdiv(M, BLOCK_M)
    num_tiles = tiles_m * tl.cdiv(N, BLOCK_N)
    for tile in range(first, num_tiles, stride):
        off_m = (tile % tiles_m) * BLOCK_M
        off_n = (tile // tiles_m) * BLOCK_N
        if TMA:
            _tile_by_tma(x_ref, w_ref, y_ref, off_m, off_n, K, BLOCK_M, BLOCK_N, BLOCK_K, STAGES,
                         PRECISION)  # fmt: skip
        else:
            _tile_by_pointers(x_ref, w_ref, y_ref, off_m + tl.arange(0, BLOCK_M),
                              off_n + tl.arange(0, BLOCK_N), M, N, K, stride_xm, stride_wn,
                              stride_ym, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, EVEN_K,
                              PRECISION)  # fmt: skip


@triton.jit(do_not_specialize=["M", "num_programs"])
def gemm_kernel(
    x_ref, w_ref, y_ref, M, N, K, stride_xm, stride_wn, stride_ym, num_programs,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, STAGES: tl.constexpr,
    EVEN_K: tl.constexpr, PRECISION: tl.constexpr, TMA: tl.constexpr,
):  # fmt: skip
    """The GEMM role alone (what the shared launch's GEMM costs without attention beside it)."""
    gemm_tiles(tl.program_id(0), num_programs, x_ref, w_ref, y_ref, M, N, K, stride_xm, stride_wn,
               stride_ym, BLOCK_M, BLOCK_N, BLOCK_K, STAGES, EVEN_K, PRECISION, TMA)  # fmt: skip


@triton.jit(do_not_specialize=[*PER_BATCH_ARGS, "M", "gemm_programs"])
def gemm_attention_kernel(
    x_ref, w_ref, y_ref, M, N, K, stride_xm, stride_wn, stride_ym, gemm_programs,
    q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr, context_lens_ptr, out_ptr, part_out_ptr,
    part_lse_ptr, scale_log2, v_scale, stride_qt, stride_qh, stride_kb, stride_ks, stride_kh,
    stride_vb, stride_vs, stride_vh, stride_bt, stride_ot, stride_oh, num_seqs, num_kv_heads,
    num_splits, split_len, split_share, num_programs,
    BLOCK_M: tl.constexpr, BLOCK_N: tl.constexpr, BLOCK_K: tl.constexpr, GEMM_STAGES: tl.constexpr,
    EVEN_K: tl.constexpr, GEMM_PRECISION: tl.constexpr, TMA: tl.constexpr,
    GROUP: tl.constexpr, GROUP_PAD: tl.constexpr, HEAD_DIM: tl.constexpr, PAGE: tl.constexpr,
    BLOCK_N_KV: tl.constexpr, SPLIT: tl.constexpr, STAGES: tl.constexpr, PRECISION: tl.constexpr,
    SWAP_AB: tl.constexpr, DOTS: tl.constexpr, INTERLEAVE: tl.constexpr,
):  # fmt: skip
    """``gemm_programs`` programs of GEMM tiles and ``num_programs`` of attention items: the
    GEMM's first, then the attention's; or (INTERLEAVE) alternating, GEMM on even program ids,
    while both roles have programs left, then the larger role's remaining ones."""
    pid = tl.program_id(0)
    if INTERLEAVE:
        both = tl.minimum(gemm_programs, num_programs)
        if pid < 2 * both:
            is_gemm = pid % 2 == 0
            index = pid // 2
        else:
            is_gemm = gemm_programs > num_programs
            index = pid - both
    else:
        is_gemm = pid < gemm_programs
        index = tl.where(is_gemm, pid, pid - gemm_programs)
    if is_gemm:
        gemm_tiles(index, gemm_programs, x_ref, w_ref, y_ref, M, N, K, stride_xm, stride_wn,
                   stride_ym, BLOCK_M, BLOCK_N, BLOCK_K, GEMM_STAGES, EVEN_K, GEMM_PRECISION,
                   TMA)  # fmt: skip
    else:
        decode_items(
            index, num_programs, q_ptr, k_cache_ptr, v_cache_ptr, block_tables_ptr,
            context_lens_ptr, context_lens_ptr, out_ptr, part_out_ptr, part_lse_ptr, scale_log2,
            v_scale, stride_qt, stride_qh, stride_kb, stride_ks, stride_kh, stride_vb, stride_vs,
            stride_vh, stride_bt, stride_ot, stride_oh, num_seqs, num_kv_heads, num_splits,
            split_len, split_share, GROUP, GROUP_PAD, HEAD_DIM, PAGE, BLOCK_N_KV, SPLIT, STAGES,
            PRECISION, SWAP_AB, DOTS, False, "",
        )  # fmt: skip


def _precision(dtype: torch.dtype) -> str:
    return "ieee" if dtype == torch.float32 else "tf32"


def _check_gemm(x: torch.Tensor, w: torch.Tensor) -> None:
    if x.dim() != 2 or w.dim() != 2 or x.shape[1] != w.shape[1]:
        raise ValueError(f"x [M, K] and w [N, K] expected, got {tuple(x.shape)} and "
                         f"{tuple(w.shape)}")  # fmt: skip
    if x.dtype != w.dtype or x.stride(1) != 1 or w.stride(1) != 1:
        raise ValueError("x and w must share a dtype and have contiguous rows")


def _check_attention(
    q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor, out: torch.Tensor
) -> None:
    if q.dim() != 3 or k_cache.dim() != 4 or k_cache.shape != v_cache.shape:
        raise ValueError(f"q [B, Hq, D] and caches [blocks, page, Hk, D] expected, got "
                         f"{tuple(q.shape)}, {tuple(k_cache.shape)} and "
                         f"{tuple(v_cache.shape)}")  # fmt: skip
    if q.shape[2] != k_cache.shape[3] or q.shape[1] % k_cache.shape[2]:
        raise ValueError(f"q's {q.shape[1]} heads of {q.shape[2]} must be a multiple of the "
                         f"caches' {k_cache.shape[2]} heads of the same size "
                         f"({k_cache.shape[3]})")  # fmt: skip
    if out.shape != q.shape:
        raise ValueError(f"out must be shaped as q {tuple(q.shape)}, got {tuple(out.shape)}")


def _operands(
    x: torch.Tensor, w: torch.Tensor, y: torch.Tensor, cfg: GemmConfig
) -> tuple[object, object, object]:
    """The GEMM role's operands: the tensors, or their TMA descriptors for ``cfg.tma``."""
    if not cfg.tma:
        return x, w, y
    if x.element_size() != 2 or (x.shape[1] * 2) % 16 or (w.shape[0] * 2) % 16:
        raise ValueError("TMA operands: 16-bit rows whose bytes are multiples of 16")
    if x.data_ptr() % 16 or w.data_ptr() % 16:
        raise ValueError("TMA operands: x and w must start on 16-byte boundaries")
    if x.is_cuda and torch.cuda.get_device_capability(x.device)[0] < 9:
        raise ValueError("TMA operands need a Hopper-class GPU")
    from triton.tools.tensor_descriptor import TensorDescriptor

    return (
        TensorDescriptor.from_tensor(x, [cfg.block_m, cfg.block_k]),
        TensorDescriptor.from_tensor(w, [cfg.block_n, cfg.block_k]),
        TensorDescriptor.from_tensor(y, [cfg.block_m, cfg.block_n]),
    )


def gemm(
    x: torch.Tensor,
    w: torch.Tensor,
    programs: int | None = None,
    config: GemmConfig | None = None,
    num_warps: int = 4,
) -> torch.Tensor:
    """x [M, K] @ w [N, K]^T by the GEMM role alone: ``programs`` persistent programs (None: one
    per output tile)."""
    _check_gemm(x, w)
    if programs is not None and programs < 1:
        raise ValueError(f"programs must be >= 1 (or None: one per tile), got {programs}")
    cfg = config or GemmConfig()
    (m, k), n = x.shape, w.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:
        return y
    grid = min(cfg.tiles(m, n), programs or cfg.tiles(m, n))
    gemm_kernel[(grid,)](
        *_operands(x, w, y, cfg), m, n, k, x.stride(0), w.stride(0), y.stride(0), grid,
        BLOCK_M=cfg.block_m, BLOCK_N=cfg.block_n, BLOCK_K=cfg.block_k, STAGES=cfg.num_stages,
        EVEN_K=k % cfg.block_k == 0, PRECISION=_precision(x.dtype), TMA=cfg.tma,
        num_warps=num_warps,
    )  # fmt: skip
    return y


def gemm_beside_attention(
    x: torch.Tensor,
    w: torch.Tensor,
    q: torch.Tensor,
    k_cache: torch.Tensor,
    v_cache: torch.Tensor,
    block_tables: torch.Tensor,
    context_lens: torch.Tensor,
    max_context_len: int,
    scale: float,
    out: torch.Tensor,
    *,
    gemm_programs: int,
    attn_programs: int,
    gemm_config: GemmConfig | None = None,
    decode_config: DecodeConfig | None = None,
    k_scale: float = 1.0,
    v_scale: float = 1.0,
    num_warps: int = 4,
    interleave: bool = False,
) -> torch.Tensor:
    """Returns x [M, K] @ w [N, K]^T and writes the decode attention of q [B, Hq, D] over the
    paged caches into ``out`` [B, Hq, D] (as ``decode_attention.decode_attention``), in one
    launch of at most ``gemm_programs`` GEMM programs and ``attn_programs`` attention programs
    (plus the split merge's launch when the contexts are split). ``interleave``: the roles'
    programs alternate by program id (else the GEMM's come first): which of the two puts one of
    each on every SM depends on the order the CTA scheduler fills SMs in, so the benchmark
    tries both."""
    _check_gemm(x, w)
    if gemm_programs < 1 or attn_programs < 1:
        raise ValueError(f"both roles need programs, got gemm {gemm_programs}, attention "
                         f"{attn_programs}")  # fmt: skip
    _check_attention(q, k_cache, v_cache, out)
    gcfg, dcfg = gemm_config or GemmConfig(), decode_config or DecodeConfig()
    if dcfg.tma:
        raise ValueError("the shared launch runs the gather decode kernel, not the TMA one")
    dots = dot_dtype(dcfg, k_cache)
    (m, k), n = x.shape, w.shape[0]
    y = torch.empty((m, n), dtype=x.dtype, device=x.device)
    if m == 0:  # no GEMM programs run: no descriptors of empty tensors to make
        gcfg = replace(gcfg, tma=False)
    num_seqs, num_heads, head_dim = q.shape
    grid = launch_grid(q, k_cache, max_context_len, attn_programs, dcfg.block_n, 1, out)
    attn = grid.programs if num_seqs else 0
    gemm_n = min(gemm_programs, gcfg.tiles(m, n)) if m else 0
    if gemm_n + attn == 0:
        return y
    num_kv_heads, page = k_cache.shape[2], k_cache.shape[1]
    group = num_heads // num_kv_heads
    gemm_attention_kernel[(gemm_n + attn,)](
        *_operands(x, w, y, gcfg), m, n, k, x.stride(0), w.stride(0), y.stride(0), gemm_n,
        q, k_cache, v_cache, block_tables, context_lens, out, grid.part_out, grid.part_lse,
        scale * k_scale * LOG2E, v_scale / P_SCALE.value if dots == "fp8" else v_scale,
        q.stride(0), q.stride(1), *cache_strides(k_cache, v_cache), block_tables.stride(0),
        out.stride(0), out.stride(1), num_seqs, num_kv_heads, grid.num_splits, grid.split_len,
        grid.split_share, max(attn, 1),
        BLOCK_M=gcfg.block_m, BLOCK_N=gcfg.block_n, BLOCK_K=gcfg.block_k,
        GEMM_STAGES=gcfg.num_stages, EVEN_K=k % gcfg.block_k == 0,
        GEMM_PRECISION=_precision(x.dtype), TMA=gcfg.tma,
        GROUP=group, GROUP_PAD=max(16, triton.next_power_of_2(group)), HEAD_DIM=head_dim,
        PAGE=page, BLOCK_N_KV=dcfg.block_n, SPLIT=grid.split_kind,
        STAGES=dcfg.num_stages if q.element_size() < 4 else 2,
        PRECISION=_precision(q.dtype), SWAP_AB=dcfg.swap_ab, DOTS=dots, INTERLEAVE=interleave,
        num_warps=num_warps,
    )  # fmt: skip
    if attn:
        merge_splits(grid, out)
    return y
