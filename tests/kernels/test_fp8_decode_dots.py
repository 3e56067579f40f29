"""Decode attention over a float8 (e4m3) cache with float16 dots (``DecodeConfig.fp8_dot="fp16"``:
the gather kernel, plain and swapped MMA, and the TMA kernel, ids one step ahead and preloaded) and
with float8 dots (``"fp8"``: the swapped gather kernel), split and unsplit, against the torch
reference on fresh random batches; queries far outside float16's range; the option's validation.
Runs on a GPU, and on Triton's CPU interpreter where that reads float8 tensors (small batches)."""

from __future__ import annotations

from dataclasses import replace
from functools import cache

import pytest
import torch
from kernel_batches import PagedBatch, make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device

from kernels import reference

pytest.importorskip("triton")
import triton
import triton.language as tl

from kernels.triton.decode_attention import DecodeConfig, decode_attention, dot_dtype
from kernels.triton.decode_attention_tma import decode_attention_tma, tma_supported

FP8 = torch.float8_e4m3fn
K_SCALE, V_SCALE = 0.7, 1.3
# (kernel, config): block_n, warps, stages, programs per SM
CONFIGS = {
    "gather": DecodeConfig(32, 4, 2, 4),
    "gather_swap_ab": DecodeConfig(64, 4, 3, 4, swap_ab=True),
    "tma": DecodeConfig(32, 1, 2, 8, tma=True),
    "tma_ids_preloaded": DecodeConfig(16, 1, 3, 9, tma=True, ids_block=4),
}


@triton.jit
def _widen_kernel(src, dst, N: tl.constexpr):
    offs = tl.arange(0, N)
    tl.store(dst + offs, tl.load(src + offs).to(tl.float16))


@cache
def _interpreter_reads_float8() -> bool:
    """Older Triton interpreters cannot take float8 tensors; newer ones (3.9 here) can."""
    src = torch.tensor([0.5, -3.0], dtype=torch.float32).to(FP8)
    dst = torch.zeros(2, dtype=torch.float16)
    try:
        _widen_kernel[(1,)](src, dst, N=2)
    except Exception:
        return False
    return dst.tolist() == [0.5, -3.0]


def _skip_if_unsupported(tma: bool, q: torch.Tensor, k8: torch.Tensor) -> None:
    if INTERPRET and not _interpreter_reads_float8():
        pytest.skip("this Triton's CPU interpreter does not read float8 tensors")
    if tma and not INTERPRET and not tma_supported(q, k8):
        pytest.skip("TMA needs a Hopper GPU")


def _batch(dtype: torch.dtype, seed: int) -> PagedBatch:
    """Ragged decodes: a partial page, page edges, contexts that split (the CPU a small one)."""
    if INTERPRET:
        return make_paged_batch([1] * 4, [1, 16, 37, 600], 4, 8, 2, 64, 16, dtype, DEVICE, seed)
    ctx = [1, 15, 16, 17, 31, 64, 300, 1025, 2000, 4099]
    return make_paged_batch([1] * len(ctx), ctx, len(ctx), 32, 8, 128, 16, dtype, DEVICE, seed)


def _decode(
    batch: PagedBatch, q: torch.Tensor, k8: torch.Tensor, v8: torch.Tensor, scale: float,
    cfg: DecodeConfig, num_sms: int | None,
) -> torch.Tensor:  # fmt: skip
    out = torch.full_like(q, float("nan"))
    m = batch.meta
    kernel = decode_attention_tma if cfg.tma else decode_attention
    kernel(q, k8, v8, m.block_tables, m.context_lens, m.max_context_len, scale, out,
           num_sms=num_sms, config=cfg, k_scale=K_SCALE, v_scale=V_SCALE)  # fmt: skip
    return out


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("num_sms", [None, 4])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("name", sorted(CONFIGS))
def test_fp16_dots_over_fp8_match_reference(
    name: str, dtype: torch.dtype, num_sms: int | None
) -> None:
    """Every kernel, a one-program-per-item grid and a persistent one of a few SMs (split KV)."""
    cfg = replace(CONFIGS[name], fp8_dot="fp16")
    if cfg.tma and num_sms is None:
        num_sms = 132 if DEVICE == "cuda" else 8  # the TMA kernel's whole-GPU placement
    batch = _batch(dtype, seed=len(name) + num_sms if num_sms else len(name))
    k8 = reference.quantize_kv(batch.k_cache, FP8, K_SCALE)
    v8 = reference.quantize_kv(batch.v_cache, FP8, V_SCALE)
    _skip_if_unsupported(cfg.tma, batch.q, k8)
    scale = batch.q.shape[-1] ** -0.5
    out = _decode(batch, batch.q, k8, v8, scale, cfg, num_sms)
    expected = reference.paged_attention(batch.q, k8, v8, batch.meta, scale, K_SCALE, V_SCALE)
    assert out.dtype == dtype and not torch.isnan(out).any()
    assert relative_error(out, expected) < 1e-2
    if not INTERPRET or dtype == torch.float16:  # the interpreter's bfloat16 dots are wrong
        widened_to_q = _decode(batch, batch.q, k8, v8, scale, replace(cfg, fp8_dot="q"), num_sms)
        assert relative_error(out, widened_to_q) < 1e-2  # both paths agree


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("magnitude", [2.0**20, 2.0**-40])
@pytest.mark.parametrize("name", ["gather", "tma"])
def test_fp16_dots_take_queries_outside_float16_range(name: str, magnitude: float) -> None:
    """bfloat16 queries of about 1e6 (float16 overflows at 65504) or 1e-12 (below its smallest
    subnormal), with the softmax scale divided by the same factor: the scores and the result are
    those of unit queries, as in the reference."""
    cfg = replace(CONFIGS[name], fp8_dot="fp16")
    batch = _batch(torch.bfloat16, seed=21)
    k8 = reference.quantize_kv(batch.k_cache, FP8, K_SCALE)
    v8 = reference.quantize_kv(batch.v_cache, FP8, V_SCALE)
    _skip_if_unsupported(cfg.tma, batch.q, k8)
    q = (batch.q.float() * magnitude).to(torch.bfloat16)
    assert torch.isinf(q.to(torch.float16)).any() or (q.to(torch.float16) == 0).all()
    scale = batch.q.shape[-1] ** -0.5 / magnitude
    out = _decode(batch, q, k8, v8, scale, cfg, 8)
    expected = reference.paged_attention(q, k8, v8, batch.meta, scale, K_SCALE, V_SCALE)
    assert torch.isfinite(out).all()
    assert relative_error(out, expected) < 1e-2


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("num_sms", [None, 4])
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
@pytest.mark.parametrize("block_n", [64, 128])
def test_fp8_dots_over_fp8_match_reference(
    block_n: int, dtype: torch.dtype, num_sms: int | None
) -> None:
    """Float8 MMAs (the swapped gather kernel): q and P rounded to e4m3 (3 mantissa bits) on top
    of the cache's rounding, so the bound is looser than the widening paths' 1e-2."""
    cfg = DecodeConfig(block_n, 4, 3, 4, swap_ab=True, fp8_dot="fp8")
    batch = _batch(dtype, seed=block_n + (num_sms or 0))
    k8 = reference.quantize_kv(batch.k_cache, FP8, K_SCALE)
    v8 = reference.quantize_kv(batch.v_cache, FP8, V_SCALE)
    _skip_if_unsupported(False, batch.q, k8)
    scale = batch.q.shape[-1] ** -0.5
    out = _decode(batch, batch.q, k8, v8, scale, cfg, num_sms)
    expected = reference.paged_attention(batch.q, k8, v8, batch.meta, scale, K_SCALE, V_SCALE)
    assert out.dtype == dtype and not torch.isnan(out).any()
    assert relative_error(out, expected) < 5e-2
    if dtype != torch.bfloat16:
        return
    big = (batch.q.float() * 2.0**20).to(dtype)  # quantised per row: any bfloat16 magnitude
    out = _decode(batch, big, k8, v8, scale / 2.0**20, cfg, num_sms)
    expected = reference.paged_attention(big, k8, v8, batch.meta, scale / 2.0**20, K_SCALE, V_SCALE)
    assert torch.isfinite(out).all() and relative_error(out, expected) < 5e-2


def test_fp8_dot_applies_to_float8_caches_only_and_is_validated() -> None:
    fp8_cache = torch.zeros(1, 16, 2, 64, dtype=FP8)
    bf16_cache = torch.zeros(1, 16, 2, 64, dtype=torch.bfloat16)
    assert DecodeConfig().fp8_dot == "fp16"  # the default: widened to float16
    assert dot_dtype(DecodeConfig(), fp8_cache) == "fp16"
    assert dot_dtype(DecodeConfig(), bf16_cache) == "q"  # 16-bit pages: the queries' dtype
    assert dot_dtype(DecodeConfig(fp8_dot="q"), fp8_cache) == "q"
    assert dot_dtype(DecodeConfig(fp8_dot="fp16"), fp8_cache) == "fp16"
    assert dot_dtype(DecodeConfig(fp8_dot="fp16"), bf16_cache) == "q"
    assert dot_dtype(DecodeConfig(swap_ab=True, fp8_dot="fp8"), fp8_cache) == "fp8"
    for no_wgmma in (DecodeConfig(fp8_dot="fp8"), DecodeConfig(16, 1, tma=True, fp8_dot="fp8")):
        with pytest.raises(ValueError, match="swap_ab"):
            dot_dtype(no_wgmma, fp8_cache)
    with pytest.raises(ValueError, match="fp8_dot"):
        dot_dtype(DecodeConfig(fp8_dot="int8"), fp8_cache)  # type: ignore[arg-type]
