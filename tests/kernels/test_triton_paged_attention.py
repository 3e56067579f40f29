"""Triton paged attention (decode, split-KV, persistent grid, extend) against the reference."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
import itertools

import triton
import triton.language as tl
from kernel_batches import dense_attention, make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device, skip_if_interpreted

from kernels import reference
from kernels.triton import paged_attention, paged_common
from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.extend_attention import ExtendConfig, extend_attention
from kernels.triton.paged_common import (
    LENGTH_SPLITS_HEADROOM,
    SPLIT_BY_CONTEXT,
    SPLIT_BY_LENGTH,
    SPLIT_BY_PLAN,
    launch_grid,
    length_chunk,
    plan_splits,
    split_bounds,
    whole_gpu_split_target,
)

pytestmark = [pytest.mark.gpu, needs_triton_device]
# bf16 / fp16 probabilities are rounded before the P @ V product; fp32 uses ieee dots
REL_TOL = {torch.bfloat16: 1e-2, torch.float16: 2e-3, torch.float32: 1e-5}
ABS_TOL = {torch.bfloat16: 3e-2, torch.float16: 5e-3, torch.float32: 1e-4}

# (q_lens, ctx_lens, num_decode): decodes first, then extends
BATCHES = {
    "decode": ([1] * 5, [1, 15, 16, 17, 200], 5),
    "decode_split_kv": ([1] * 3, [4099, 2500, 31], 3),
    "prefill": ([13, 64, 100], [13, 64, 100], 0),
    "chunked_prefill": ([37, 5, 64], [290, 81, 64], 0),
    "mixed": ([1, 1, 1, 1, 33, 1, 70], [1000, 7, 64, 513, 133, 1, 70], 4),
}
SMALL = {"decode", "prefill", "mixed"}  # what the CPU interpreter runs (CI), with one head shape


def _check(
    q_lens: list[int],
    ctx_lens: list[int],
    num_decode: int,
    heads: tuple[int, int, int],
    dtype: torch.dtype,
    block_size: int,
    num_sms: int | None = None,
    seed: int = 0,
    config: DecodeConfig | None = None,
) -> None:
    if INTERPRET and dtype == torch.bfloat16:
        pytest.skip("the CPU interpreter's bfloat16 tl.dot is wrong")
    num_q_heads, num_kv_heads, head_dim = heads
    batch = make_paged_batch(
        q_lens, ctx_lens, num_decode, num_q_heads, num_kv_heads, head_dim, block_size, dtype,
        DEVICE, seed,
    )  # fmt: skip
    scale = head_dim**-0.5
    out = paged_attention(
        batch.q, batch.k_cache, batch.v_cache, batch.meta, scale, num_sms=num_sms,
        decode_config=config,
    )  # fmt: skip
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, scale)
    assert out.dtype == dtype and not torch.isnan(out).any()
    assert relative_error(out, expected) < REL_TOL[dtype]
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=ABS_TOL[dtype])
    assert relative_error(out, dense_attention(batch, scale)) < REL_TOL[dtype]


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("heads", [(32, 8, 128), (8, 8, 64), (16, 2, 64)])
@pytest.mark.parametrize("name", sorted(BATCHES))
def test_paged_attention(name: str, heads: tuple[int, int, int], dtype: torch.dtype) -> None:
    skip_if_interpreted(name not in SMALL or heads != (16, 2, 64))
    _check(*BATCHES[name], heads, dtype, block_size=16, seed=len(name))


@pytest.mark.parametrize("name", ["mixed", "decode_split_kv"])
def test_paged_attention_float32_and_block_32(name: str) -> None:
    if INTERPRET and name not in SMALL:
        pytest.skip("too slow for the CPU interpreter")
    _check(*BATCHES[name], (8, 2, 64), torch.float32, block_size=32, seed=7)


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("num_sms", [1, 8, 32])
@pytest.mark.parametrize("name", ["decode", "decode_split_kv", "mixed"])
def test_paged_attention_on_a_fixed_sm_budget(name: str, num_sms: int, dtype: torch.dtype) -> None:
    skip_if_interpreted(name not in SMALL or num_sms != 8)
    _check(*BATCHES[name], (32, 8, 128), dtype, block_size=16, num_sms=num_sms, seed=3)


@pytest.mark.skipif(INTERPRET, reason="too slow for the CPU interpreter")
def test_paged_attention_many_random_decodes() -> None:
    gen = torch.Generator().manual_seed(11)
    ctx = torch.randint(1, 3000, (96,), generator=gen).tolist()
    q_lens = [1] * 96 + [int(n) for n in torch.randint(1, 200, (3,), generator=gen)]
    ctx += [
        q + int(p)
        for q, p in zip(q_lens[96:], torch.randint(0, 500, (3,), generator=gen), strict=True)
    ]
    _check(q_lens, ctx, 96, (32, 8, 128), torch.bfloat16, block_size=16, seed=12)


# every tile / pipeline shape that bench/decode_attention_sms.py sweeps
SWEPT = [(32, 4), (32, 6), (64, 2), (64, 3), (64, 4), (128, 2), (128, 3)]


@pytest.mark.parametrize("swap_ab", [False, True])
@pytest.mark.parametrize("num_warps", [4, 8])
@pytest.mark.parametrize(("block_n", "stages"), SWEPT)
@pytest.mark.parametrize("name", ["decode_split_kv", "mixed"])
def test_decode_configs(
    name: str, block_n: int, stages: int, num_warps: int, swap_ab: bool
) -> None:
    tiles = (block_n, stages, num_warps, swap_ab)
    skip_if_interpreted(name not in SMALL or tiles != (64, 2, 4, True))
    config = DecodeConfig(block_n, num_warps, stages, ctas_per_sm=2, swap_ab=swap_ab)
    dtype = torch.float16 if INTERPRET else torch.bfloat16  # the interpreter's bf16 dot is wrong
    _check(*BATCHES[name], (32, 8, 128), dtype, 16, num_sms=16, seed=4, config=config)


@pytest.mark.parametrize("confined", [False, True], ids=["evict-first", "confined"])
@pytest.mark.parametrize("num_sms", [None, 16])
@pytest.mark.parametrize("name", ["decode", "decode_split_kv", "mixed"])
def test_decode_evicted_first_and_confined(name: str, num_sms: int | None, confined: bool) -> None:
    """The gather kernel with K/V loaded under L2's evict_first policy (DecodeConfig.evict_kv),
    and in the configuration confined to an SM budget (one program per SM, CONFINED_DECODE), both
    for attention beside GEMMs: the reference's output, on the whole GPU and on 16 SMs."""
    from kernels.attention.triton_attention import CONFINED_DECODE

    skip_if_interpreted(name not in SMALL)
    config = CONFINED_DECODE if confined else DecodeConfig(evict_kv=True)
    dtype = torch.float16 if INTERPRET else torch.bfloat16
    _check(*BATCHES[name], (32, 8, 128), dtype, 16, num_sms=num_sms, seed=11, config=config)


# chunks longer than the largest query tile, prefixes spanning many key tiles, ragged lengths
LONG_EXTENDS = ([300, 200, 129, 1, 64], [300, 700, 1000, 33, 64], 0)
EXTEND_CONFIGS = [
    ExtendConfig(), ExtendConfig(128, 64, 8, 2), ExtendConfig(128, 128, 8, 2),
    ExtendConfig(64, 64, 4, 3), ExtendConfig(128, 32, 4, 3),
]  # fmt: skip


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("config", EXTEND_CONFIGS, ids=str)
def test_extend_configs_on_long_chunks(config: ExtendConfig, dtype: torch.dtype) -> None:
    """Every extend tile configuration against the reference, on chunks whose keys fall in
    both the unmasked range (seen by all of a tile's rows) and the causal band."""
    skip_if_interpreted(True)
    q_lens, ctx_lens, _ = LONG_EXTENDS
    batch = make_paged_batch(q_lens, ctx_lens, 0, 32, 8, 128, 16, dtype, DEVICE, seed=11)
    meta, scale = batch.meta, 128**-0.5
    out = torch.full_like(batch.q, float("nan"))
    extend_attention(
        batch.q, batch.k_cache, batch.v_cache, meta.block_tables, meta.context_lens,
        meta.cu_seqlens_q, 0, meta.num_seqs, meta.max_query_len, scale, out, config=config,
    )  # fmt: skip
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, meta, scale)
    assert not torch.isnan(out).any()
    assert relative_error(out, expected) < REL_TOL[dtype]
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=ABS_TOL[dtype])


def test_extend_small_tiles_in_the_interpreter() -> None:
    """The split of the key range (unmasked, then causal) with tiles small enough that the CPU
    interpreter crosses several of each (CI)."""
    config = ExtendConfig(block_m=32, block_n=16)
    dtype = torch.float16 if INTERPRET else torch.bfloat16
    batch = make_paged_batch([1, 70, 37, 5], [50, 150, 100, 5], 1, 4, 2, 16, 16, dtype, DEVICE,
                             seed=3)  # fmt: skip
    meta = batch.meta
    out = torch.zeros_like(batch.q)
    extend_attention(
        batch.q, batch.k_cache, batch.v_cache, meta.block_tables, meta.context_lens,
        meta.cu_seqlens_q, 1, 3, 70, 0.25, out, config=config,
    )  # fmt: skip
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, meta, 0.25)
    assert relative_error(out[1:], expected[1:]) < REL_TOL[dtype]


def _tma_or_skip() -> None:
    if INTERPRET or not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA page copies need a Hopper-class GPU")


@pytest.mark.parametrize("num_sms", [None, 8, 32])
@pytest.mark.parametrize(("pages", "stages", "num_warps"), [(1, 4, 4), (2, 3, 4), (1, 8, 2),
                                                            (2, 6, 8)])  # fmt: skip
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", ["decode", "decode_split_kv", "mixed"])
def test_tma_decode(
    name: str, dtype: torch.dtype, pages: int, stages: int, num_warps: int, num_sms: int | None
) -> None:
    _tma_or_skip()
    config = DecodeConfig(16 * pages, num_warps, stages, ctas_per_sm=4, tma=True)
    _check(*BATCHES[name], (32, 8, 128), dtype, 16, num_sms=num_sms, seed=5, config=config)


@pytest.mark.parametrize("num_sms", [None, 32])
@pytest.mark.parametrize(("pages", "stages", "ids_block"), [(1, 3, 64), (2, 4, 64), (2, 3, 2),
                                                            (1, 6, 16)])  # fmt: skip
@pytest.mark.parametrize("name", ["decode", "decode_split_kv", "mixed"])
def test_tma_decode_with_preloaded_page_ids(
    name: str, pages: int, stages: int, ids_block: int, num_sms: int | None
) -> None:
    """Page ids loaded ``ids_block`` at a time into registers: blocks that end mid-context, a
    context shorter than one block, splits, one or two pages per step."""
    _tma_or_skip()
    config = DecodeConfig(16 * pages, 1, stages, ctas_per_sm=8, tma=True, ids_block=ids_block)
    _check(*BATCHES[name], (32, 8, 128), torch.bfloat16, 16, num_sms=num_sms, seed=6,
           config=config)  # fmt: skip


def test_tma_ids_block_must_be_a_power_of_two() -> None:
    from kernels.triton.decode_attention_tma import decode_attention_tma

    q = torch.zeros(1, 4, 16)
    cache = torch.zeros(2, 16, 1, 16)
    for bad in (1, 3, 48):
        with pytest.raises(ValueError, match="ids_block"):
            decode_attention_tma(q, cache, cache, torch.zeros(1, 1, dtype=torch.int32),
                                 torch.ones(1, dtype=torch.int32), 1, 1.0, q.clone(),
                                 config=DecodeConfig(16, tma=True, ids_block=bad))  # fmt: skip


@pytest.mark.parametrize("heads", [(8, 8, 64), (16, 2, 64), (32, 8, 128)])
def test_tma_decode_many_random_decodes_other_heads_and_nan_slots(
    heads: tuple[int, int, int],
) -> None:
    """Unwritten cache slots hold NaN: the TMA kernel reads whole pages and must ignore them."""
    _tma_or_skip()
    gen = torch.Generator().manual_seed(13)
    ctx = torch.randint(1, 3000, (64,), generator=gen).tolist()
    batch = make_paged_batch([1] * 64, ctx, 64, *heads, 16, torch.bfloat16, DEVICE, 14)
    used = torch.zeros(batch.k_cache.shape[0] * 16, dtype=torch.bool, device=DEVICE)
    for i, n in enumerate(ctx):
        pos = torch.arange(n, device=DEVICE)
        used[batch.meta.block_tables[i, pos // 16].long() * 16 + pos % 16] = True
    for cache in (batch.k_cache, batch.v_cache):
        cache.view(-1, *cache.shape[2:])[~used] = float("nan")
    scale = heads[2] ** -0.5
    config = DecodeConfig(32, 4, 4, ctas_per_sm=4, tma=True)
    out = paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, scale,
                          num_sms=16, decode_config=config)  # fmt: skip
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, scale)
    assert not torch.isnan(out).any()
    assert relative_error(out, expected) < REL_TOL[torch.bfloat16]


@triton.jit
def _bounds_kernel(out_ptr, ctx, num_splits, split_len, chunk, BLOCK: tl.constexpr,
                   SPLIT: tl.constexpr):  # fmt: skip
    split = tl.program_id(0)
    start, end = split_bounds(ctx, split, num_splits, split_len, chunk, BLOCK, SPLIT)
    tl.store(out_ptr + 2 * split, start)
    tl.store(out_ptr + 2 * split + 1, end)


def _split_bounds(
    ctx: int, num_splits: int, split_len: int, block: int, kind: int = SPLIT_BY_CONTEXT.value,
    chunk: int = 0,
) -> list[tuple[int, int]]:  # fmt: skip
    """(start, end) of every split of a ``ctx``-token context, from the kernels' own helper."""
    out = torch.empty(2 * num_splits, dtype=torch.int32, device=DEVICE)
    _bounds_kernel[(num_splits,)](out, ctx, num_splits, split_len, chunk, BLOCK=block, SPLIT=kind)
    flat = out.tolist()
    return [(flat[2 * i], flat[2 * i + 1]) for i in range(num_splits)]


@triton.jit
def _chunk_kernel(out_ptr, context_lens_ptr, num_seqs, split_share, BLOCK: tl.constexpr,
                  SPLIT: tl.constexpr):  # fmt: skip
    tl.store(out_ptr, length_chunk(context_lens_ptr, num_seqs, split_share, BLOCK, SPLIT))


def _length_chunk(lens: list[int], split_share: int, block: int, kind: int) -> int:
    out = torch.zeros(1, dtype=torch.int32, device=DEVICE)
    ctx = torch.tensor(lens, dtype=torch.int32, device=DEVICE)
    _chunk_kernel[(1,)](out, ctx, len(lens), split_share, BLOCK=block, SPLIT=kind)
    return int(out.item())


@pytest.mark.parametrize("num_seqs", [1, 5, 128, 300])
def test_the_length_chunk_spreads_the_batchs_whole_context_over_its_share(num_seqs: int) -> None:
    """Every context counts (300 of them: three loads of 128), the chunk is whole blocks, and
    the cuts other than by length get none."""
    lens = [1 + (7919 * i) % 3000 for i in range(num_seqs)]
    total = sum(lens)
    chunk = _length_chunk(lens, 33, 64, SPLIT_BY_LENGTH.value)
    share_tokens = -(-total // 33)
    assert chunk == -(-share_tokens // 64) * 64
    assert _length_chunk(lens, 33, 64, SPLIT_BY_CONTEXT.value) == 0


def test_the_cut_by_length_gives_long_contexts_more_splits() -> None:
    """Ragged contexts under one plan (16 sequences x 8 kv heads on 132 SMs, planned for 8,192
    tokens as a CUDA graph is): the cut by each context gives every sequence the same number
    of splits, so the longest context's pieces are 3,000 / 3 tokens; the cut by length cuts
    every context into pieces of the batch's total over its share (or, for a context longer
    than its splits allow, a little longer), and a short context takes one split. Both cover
    each context exactly."""
    lens = [3000, 2400, 1800, 1200] + [100] * 12
    _, kv_heads, block, sms = 16, 8, 64, 132
    items = len(lens) * kv_heads
    uniform, split_len = plan_splits(items, 8192, sms, block)
    wide, wide_len = plan_splits(items, 8192, sms, block, headroom=LENGTH_SPLITS_HEADROOM)
    assert (uniform, wide) == (3, 3 * LENGTH_SPLITS_HEADROOM)
    share = uniform * len(lens)  # launch_grid's: as many pieces as the cut by context makes
    chunk = _length_chunk(lens, share, block, SPLIT_BY_LENGTH.value)
    longest = {"context": 0, "length": 0}
    for ctx in lens:
        for cut, bounds in (
            ("context", _split_bounds(ctx, uniform, split_len, block)),
            ("length", _split_bounds(ctx, wide, wide_len, block, SPLIT_BY_LENGTH.value, chunk)),
        ):
            busy = [(s, e) for s, e in bounds if e > s]
            assert busy[0][0] == 0 and busy[-1][1] == ctx
            assert all(a[1] == b[0] for a, b in itertools.pairwise(busy))
            longest[cut] = max(longest[cut], max(e - s for s, e in busy))
        if cut == "length" and ctx <= chunk:
            assert len(busy) == 1
    assert longest["context"] == 1024  # 3,000 in 3 pieces of whole 64-token blocks
    assert chunk == 256  # 9,600 tokens over 48 pieces, in whole blocks
    # 3,000 tokens would take 12 chunks; its 9 splits take 384 each (the headroom's limit)
    assert longest["length"] == 384


def test_the_cut_by_length_lengthens_pieces_past_its_splits() -> None:
    """A context longer than num_splits chunks is cut into num_splits longer pieces."""
    bounds = _split_bounds(5000, 4, 8192, 64, SPLIT_BY_LENGTH.value, chunk=256)
    assert bounds == [(0, 1280), (1280, 2560), (2560, 3840), (3840, 5000)]


@pytest.mark.parametrize(
    ("ctx", "plan_len", "items", "block"),
    [(1400, 8192, 24, 64), (1400, 8192, 24, 32), (100, 8192, 8, 64), (4099, 4099, 3, 64),
     (31, 4099, 3, 16), (8192, 8192, 2, 64), (1, 8192, 8, 64)],
)  # fmt: skip
def test_each_context_is_cut_into_the_planned_splits(
    ctx: int, plan_len: int, items: int, block: int
) -> None:
    """A plan made for ``plan_len`` tokens (a CUDA graph's: the longest possible context) cuts a
    shorter context into as many busy splits as whole blocks allow, covering it exactly; with
    the old cut by the plan's split length, 1,400 tokens under an 8,192-token plan kept 2 of 11
    splits busy."""
    num_splits, split_len = plan_splits(items, plan_len, 132, block)
    bounds = _split_bounds(ctx, num_splits, split_len, block)
    busy = [(s, e) for s, e in bounds if e > s]
    assert busy[0][0] == 0 and busy[-1][1] == ctx
    assert all(a[1] == b[0] for a, b in itertools.pairwise(busy))  # contiguous
    assert all(s % block == 0 and e - s <= split_len for s, e in busy)
    assert len(busy) == min(num_splits, -(-ctx // block))  # as many as whole blocks allow
    if (ctx, plan_len, items, block) == (1400, 8192, 24, 64):
        assert (num_splits, len(busy)) == (11, 11)
        # the old cut, kept for A/B runs (NANOLANG_KV_SPLITS=plan): pieces of the plan's length
        old = _split_bounds(ctx, num_splits, split_len, block, SPLIT_BY_PLAN.value)
        assert [(s, e) for s, e in old if e > s] == [(0, 768), (768, 1400)]


def test_the_cut_follows_nanolang_kv_splits(monkeypatch: pytest.MonkeyPatch) -> None:
    q = torch.zeros(1, 4, 16)
    cache = torch.zeros(2, 16, 1, 16)
    grid = launch_grid(q, cache, 8192, None, 64, 1, q)
    assert grid.split and grid.split_kind == SPLIT_BY_CONTEXT.value and grid.split_share == 0
    monkeypatch.setenv("NANOLANG_KV_SPLITS", "plan")
    assert grid.split_kind == SPLIT_BY_PLAN.value
    monkeypatch.setenv("NANOLANG_KV_SPLITS", "length")
    assert grid.split_kind == SPLIT_BY_LENGTH.value
    by_length = launch_grid(q, cache, 8192, None, 64, 1, q)
    uniform = plan_splits(1, 8192, paged_common.device_sm_count(q.device), 64)[0]
    assert by_length.split_share == uniform  # one sequence: the uniform plan's pieces
    assert by_length.num_splits == min(LENGTH_SPLITS_HEADROOM * uniform, 32)
    monkeypatch.setenv("NANOLANG_KV_SPLITS", "sometimes")
    with pytest.raises(
        ValueError, match="NANOLANG_KV_SPLITS='sometimes': choose context, plan, length"
    ):
        grid.split_kind  # noqa: B018


@pytest.mark.parametrize("cut", ["context", "length"])
@pytest.mark.parametrize("tma", [False, True])
def test_decode_planned_for_a_far_longer_context_matches_the_reference(
    tma: bool, cut: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The graph-style call: ``max_context_len`` is the engine's context length (8,192), the
    sequences are short and ragged, so each one's own context is split finely (by context),
    or cut into pieces of about one length, the splits past a short context's end empty."""
    import dataclasses

    if tma:
        _tma_or_skip()
    monkeypatch.setenv("NANOLANG_KV_SPLITS", cut)
    dtype = torch.float32 if INTERPRET else torch.bfloat16
    ctx = [1400, 37, 700] if INTERPRET else [1400, 37, 700, 2900, 1, 1025, 64, 3000]
    batch = make_paged_batch([1] * len(ctx), ctx, len(ctx), 8, 2, 64, 16, dtype, DEVICE, 21)
    meta = dataclasses.replace(batch.meta, max_context_len=8192)
    config = DecodeConfig(32, 4, 2, tma=True) if tma else DecodeConfig(64, 4, 2)
    out = paged_attention(batch.q, batch.k_cache, batch.v_cache, meta, 0.125, decode_config=config)
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, 0.125)
    assert not torch.isnan(out).any()
    assert relative_error(out, expected) < REL_TOL[dtype]
    assert relative_error(out, dense_attention(batch, 0.125)) < REL_TOL[dtype]


def test_the_split_target_follows_nanolang_kv_split_target(monkeypatch: pytest.MonkeyPatch) -> None:
    """48 sequences of Llama-3-8B's 8 KV heads (384 items) on 132 SMs: unsplit at the default
    2 items per SM, 3 splits at 8."""
    assert plan_splits(384, 8192, 132, 64)[0] == 1
    monkeypatch.setenv("NANOLANG_KV_SPLIT_TARGET", "8")
    assert plan_splits(384, 8192, 132, 64)[0] == 3
    for bad in ("0", "-1", "two", ""):
        monkeypatch.setenv("NANOLANG_KV_SPLIT_TARGET", bad)
        with pytest.raises(ValueError, match="NANOLANG_KV_SPLIT_TARGET"):
            plan_splits(384, 8192, 132, 64)


def test_whole_gpu_launches_plan_for_their_kernels_own_split_target(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """One program per item, Llama-3-8B's 8 KV heads, planned for 8,192 tokens: by default every
    launch aims for 2 items per SM; under NANOLANG_KV_SPLIT_TARGET=kernel the gather kernel
    splits only below 1 item per SM and the TMA kernel aims for 4 while the batch gives fewer
    than 2 items per SM, 2 beyond; a persistent grid (an SM budget) keeps 2."""
    assert [whole_gpu_split_target("gather", n, 132) for n in (8, 128, 256, 2048)] == [1] * 4
    assert [whole_gpu_split_target("tma", n, 132) for n in (8, 128, 263, 264, 512)] == [
        4, 4, 4, 2, 2,
    ]  # fmt: skip
    with pytest.raises(ValueError, match="kernel must be"):
        whole_gpu_split_target("flashinfer", 8, 132)
    cache = torch.zeros(2, 16, 8, 16)

    def splits(batch: int, kernel: str | None, num_sms: int | None = None) -> int:
        q = torch.zeros(batch, 32, 16)
        grid = launch_grid(q, cache, 8192, num_sms, 64, 1, q, whole_gpu_kernel=kernel)
        return grid.num_splits

    assert paged_common.device_sm_count(torch.device("cpu")) == 8  # the interpreter's stand-in
    # one sequence = 8 items on 8 SMs: unsplit at 1 per SM, 2 splits at 2, 4 at 4
    monkeypatch.delenv("NANOLANG_KV_SPLIT_TARGET", raising=False)
    assert (splits(1, None), splits(1, "gather"), splits(1, "tma")) == (2, 2, 2)
    monkeypatch.setenv("NANOLANG_KV_SPLIT_TARGET", "kernel")
    assert (splits(1, None), splits(1, "gather"), splits(1, "tma")) == (2, 1, 4)
    assert (splits(2, "gather"), splits(2, "tma")) == (1, 1)  # 16 items: 2 per SM
    assert splits(1, "tma", num_sms=8) == 2  # a persistent grid keeps 2
