"""The shared launch of a GEMM and decode attention (kernels.triton.gemm_beside_attention) against
torch's linear and the reference paged attention, on fresh random inputs: its GEMM role alone and
the two roles in one launch, over shapes that do not fill the last tile, split contexts, fewer
programs than work (each program strides), and float8 caches."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from kernel_batches import make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device, randn, skip_if_interpreted

from kernels import reference
from kernels.triton.decode_attention import DecodeConfig
from kernels.triton.gemm_beside_attention import GemmConfig, gemm, gemm_beside_attention

pytestmark = [pytest.mark.gpu, needs_triton_device]
# the interpreter's bfloat16 tl.dot is wrong: float16 there, bfloat16 on a GPU
DTYPE = torch.float16 if INTERPRET else torch.bfloat16
GEMM_TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}
ATTN_TOL = {torch.float16: 2e-3, torch.bfloat16: 1e-2, torch.float32: 1e-5}
SMALL_TILE = GemmConfig(32, 32, 32, 2)
TMA_TILE = GemmConfig(32, 32, 32, 2, tma=True)  # TMA copies: Hopper, or the interpreter
# (M, N, K): a partial last row tile, a partial column tile, a K that is not a multiple of 32
GEMM_SHAPES = [(5, 48, 64), (40, 96, 80), (1, 32, 32)]


def _gemm_error(x: torch.Tensor, w: torch.Tensor, y: torch.Tensor) -> float:
    return relative_error(y, torch.nn.functional.linear(x.double(), w.double()))


def _tma_or_skip(config: GemmConfig) -> None:
    if config.tma and torch.cuda.is_available() and torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA copies need a Hopper-class GPU")


@pytest.mark.parametrize("config", [SMALL_TILE, TMA_TILE], ids=["pointers", "tma"])
@pytest.mark.parametrize("programs", [None, 1, 3])
@pytest.mark.parametrize(("m", "n", "k"), GEMM_SHAPES)
def test_the_gemm_role_alone_matches_torch(
    m: int, n: int, k: int, programs: int | None, config: GemmConfig
) -> None:
    _tma_or_skip(config)
    x = randn(m, k, dtype=DTYPE, seed=m + n)
    w = randn(n, k, dtype=DTYPE, seed=k, scale=0.1)
    y = gemm(x, w, programs=programs, config=config)
    assert y.shape == (m, n) and y.dtype == DTYPE
    assert _gemm_error(x, w, y) < GEMM_TOL[DTYPE]


def test_the_gemm_role_in_float32_is_exact_to_rounding() -> None:
    x = randn(7, 40, dtype=torch.float32, seed=1)
    w = randn(33, 40, dtype=torch.float32, seed=2)
    y = gemm(x, w, programs=2, config=SMALL_TILE)
    torch.testing.assert_close(y, x @ w.T, rtol=1e-5, atol=1e-5)


def _attention_batch(ctx_lens: list[int], dtype: torch.dtype, seed: int):  # type: ignore[no-untyped-def]
    return make_paged_batch([1] * len(ctx_lens), ctx_lens, len(ctx_lens), 16, 2, 64, 16, dtype,
                            DEVICE, seed)  # fmt: skip


# (context lengths, GEMM shape, GEMM programs, attention programs): programs fewer than the work
# (both roles stride; more GEMM programs than attention ones, and the other way round, so that
# interleaving leaves each role's extra programs), a context long enough to be split (merged
# after the launch), one program of each role
CASES = {
    "strided": ([1, 15, 17, 200], (40, 96, 80), 3, 2),
    "more_attention": ([1, 15, 17, 200, 64, 9], (40, 96, 80), 2, 5),
    "split_kv": ([700, 31], (5, 48, 64), 2, 2),
    "one_each": ([64, 3], (1, 32, 32), 1, 1),
}


@pytest.mark.parametrize("config", [SMALL_TILE, TMA_TILE], ids=["pointers", "tma"])
@pytest.mark.parametrize("interleave", [False, True])
@pytest.mark.parametrize("name", sorted(CASES))
def test_one_launch_gives_both_results(name: str, interleave: bool, config: GemmConfig) -> None:
    _tma_or_skip(config)
    ctx_lens, (m, n, k), gemm_programs, attn_programs = CASES[name]
    batch = _attention_batch(ctx_lens, DTYPE, seed=len(name))
    x = randn(m, k, dtype=DTYPE, seed=3)
    w = randn(n, k, dtype=DTYPE, seed=4, scale=0.1)
    scale = 64**-0.5
    out = torch.full_like(batch.q, float("nan"))
    y = gemm_beside_attention(
        x, w, batch.q, batch.k_cache, batch.v_cache, batch.meta.block_tables,
        batch.meta.context_lens, batch.meta.max_context_len, scale, out,
        gemm_programs=gemm_programs, attn_programs=attn_programs, gemm_config=config,
        decode_config=DecodeConfig(block_n=32, num_stages=2), interleave=interleave,
    )  # fmt: skip
    assert _gemm_error(x, w, y) < GEMM_TOL[DTYPE]
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, scale)
    assert not torch.isnan(out).any()  # every row written
    assert relative_error(out, expected) < ATTN_TOL[DTYPE]


def test_over_a_float8_cache_with_scales() -> None:
    skip_if_interpreted(False)
    batch = _attention_batch([40, 130, 9], torch.float32, seed=5)
    k_scale, v_scale = 0.05, 0.02
    k8 = (batch.k_cache / k_scale).to(torch.float8_e4m3fn)
    v8 = (batch.v_cache / v_scale).to(torch.float8_e4m3fn)
    q = batch.q.to(DTYPE)
    x = randn(9, 64, dtype=DTYPE, seed=6)
    w = randn(40, 64, dtype=DTYPE, seed=7, scale=0.1)
    out = torch.empty_like(q)
    y = gemm_beside_attention(
        x, w, q, k8, v8, batch.meta.block_tables, batch.meta.context_lens,
        batch.meta.max_context_len, 64**-0.5, out, gemm_programs=2, attn_programs=2,
        gemm_config=SMALL_TILE, k_scale=k_scale, v_scale=v_scale,
    )  # fmt: skip
    assert _gemm_error(x, w, y) < GEMM_TOL[DTYPE]
    # the reference over the same float8 values, widened and scaled back
    expected = reference.paged_attention(
        q.float(), k8.float() * k_scale, v8.float() * v_scale, batch.meta, 64**-0.5
    )
    assert relative_error(out, expected) < 2e-2  # float16 dots over float8 K/V


def test_bad_arguments_are_refused() -> None:
    batch = _attention_batch([8], DTYPE, seed=8)
    x = randn(4, 32, dtype=DTYPE, seed=9)
    meta = batch.meta
    args = (batch.q, batch.k_cache, batch.v_cache, meta.block_tables, meta.context_lens,
            meta.max_context_len, 0.1, torch.empty_like(batch.q))  # fmt: skip
    with pytest.raises(ValueError, match=r"x \[M, K\] and w \[N, K\]"):
        gemm_beside_attention(x, randn(8, 16, dtype=DTYPE, seed=1), *args, gemm_programs=1,
                              attn_programs=1)  # fmt: skip
    with pytest.raises(ValueError, match="both roles need programs"):
        gemm_beside_attention(x, randn(8, 32, dtype=DTYPE, seed=1), *args, gemm_programs=0,
                              attn_programs=1)  # fmt: skip
    with pytest.raises(ValueError, match="not the TMA one"):
        gemm_beside_attention(x, randn(8, 32, dtype=DTYPE, seed=1), *args, gemm_programs=1,
                              attn_programs=1, decode_config=DecodeConfig(tma=True))  # fmt: skip
    with pytest.raises(ValueError, match="power of two"):
        GemmConfig(block_m=48)
    with pytest.raises(ValueError, match="out must be shaped as q"):
        gemm_beside_attention(x, randn(8, 32, dtype=DTYPE, seed=1), *args[:-1],
                              torch.empty(2, 16, 64), gemm_programs=1, attn_programs=1)  # fmt: skip
    with pytest.raises(ValueError, match="must be a multiple of the caches'"):
        gemm_beside_attention(x, randn(8, 32, dtype=DTYPE, seed=1), batch.q[:, :3], *args[1:],
                              gemm_programs=1, attn_programs=1)  # fmt: skip
    with pytest.raises(ValueError, match="programs must be >= 1"):
        gemm(x, randn(8, 32, dtype=DTYPE, seed=1), programs=0)
    shifted = randn(5, 32, dtype=DTYPE, seed=2).flatten()[1:129].view(4, 32)  # 2 bytes in
    with pytest.raises(ValueError, match="16-byte boundaries"):
        gemm(shifted, randn(8, 32, dtype=DTYPE, seed=3), config=TMA_TILE)
    with pytest.raises(ValueError, match="TMA operands: 16-bit rows"):
        gemm(randn(4, 36, dtype=DTYPE, seed=2), randn(8, 36, dtype=DTYPE, seed=3), config=TMA_TILE)
