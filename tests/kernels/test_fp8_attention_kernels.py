"""The float8 (e4m3) KV cache with scales: the reference's store and read, and every Triton
attention kernel reading it, against the reference on fresh random batches."""

from __future__ import annotations

import pytest
import torch
from kernel_batches import dense_attention, make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device

from kernels import reference

FP8 = torch.float8_e4m3fn


def _to_fp8(cache: torch.Tensor, scale: float) -> torch.Tensor:
    return reference.quantize_kv(cache, FP8, scale)


def test_store_saturates_and_reads_back_within_fp8_rounding() -> None:
    gen = torch.Generator().manual_seed(3)
    k = torch.randn(40, 2, 16, generator=gen) * 3.0
    v = torch.randn(40, 2, 16, generator=gen) * 0.02
    k[0, 0, 0] = 1e4  # beyond 448 x k_scale: saturates
    k_cache = torch.full((8, 8, 2, 16), float("nan")).to(FP8)
    v_cache = torch.full((8, 8, 2, 16), float("nan")).to(FP8)
    slots = torch.randperm(64, generator=gen)[:40]
    k_scale, v_scale = 2.0, 1 / 64
    reference.store_kv(k, v, k_cache, v_cache, slots, k_scale, v_scale)
    k_back = reference.dequantize_kv(k_cache.view(-1, 2, 16)[slots], k_scale)
    v_back = reference.dequantize_kv(v_cache.view(-1, 2, 16)[slots], v_scale)
    assert k_back[0, 0, 0] == 448 * k_scale
    rest = torch.ones_like(k, dtype=torch.bool)
    rest[0, 0, 0] = False
    # e4m3 keeps 3 mantissa bits: relative rounding error at most 2^-4 for normal values
    assert ((k_back - k).abs() <= k.abs() / 16 + 2**-9 * k_scale)[rest].all()
    assert ((v_back - v).abs() <= v.abs() / 16 + 2**-9 * v_scale).all()
    untouched = torch.ones(64, dtype=torch.bool)
    untouched[slots] = False
    assert torch.isnan(k_cache.view(-1, 2, 16)[untouched].float()).all()


def test_reference_attention_reads_scaled_fp8() -> None:
    """Attention over an fp8 cache equals attention over its dequantized bf16-free values, and
    stays close to the unquantized cache."""
    batch = make_paged_batch([1, 1, 9], [30, 70, 40], 2, 4, 2, 16, 8, torch.float32, "cpu", 5)
    k_scale, v_scale = 0.5, 0.25
    k8, v8 = _to_fp8(batch.k_cache, k_scale), _to_fp8(batch.v_cache, v_scale)
    out = reference.paged_attention(batch.q, k8, v8, batch.meta, 0.25, k_scale, v_scale)
    wide = reference.paged_attention(
        batch.q, reference.dequantize_kv(k8, k_scale), reference.dequantize_kv(v8, v_scale),
        batch.meta, 0.25,
    )  # fmt: skip
    torch.testing.assert_close(out, wide, rtol=1e-6, atol=1e-6)
    exact = dense_attention(batch, 0.25)
    assert relative_error(out, exact) < 0.06  # e4m3 rounding of K and V


# (q_lens, ctx_lens, num_decode): decodes first, then extends
BATCHES = {
    "decode": ([1] * 5, [1, 15, 16, 17, 200], 5),
    "decode_split_kv": ([1] * 3, [4099, 2500, 31], 3),
    "mixed": ([1, 1, 1, 1, 33, 1, 70], [1000, 7, 64, 513, 133, 1, 70], 4),
}


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("name", sorted(BATCHES))
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16])
def test_triton_attention_over_fp8_matches_reference(name: str, dtype: torch.dtype) -> None:
    pytest.importorskip("triton")
    from kernels.triton import paged_attention

    if INTERPRET:
        pytest.skip("float8 tensors are not supported by Triton's CPU interpreter")
    q_lens, ctx_lens, nd = BATCHES[name]
    batch = make_paged_batch(q_lens, ctx_lens, nd, 32, 8, 128, 16, dtype, DEVICE, 11)
    k_scale, v_scale = 0.7, 1.3
    k8, v8 = _to_fp8(batch.k_cache, k_scale), _to_fp8(batch.v_cache, v_scale)
    out = paged_attention(batch.q, k8, v8, batch.meta, 128**-0.5, k_scale, v_scale)
    expected = reference.paged_attention(batch.q, k8, v8, batch.meta, 128**-0.5, k_scale, v_scale)
    assert out.dtype == dtype and not torch.isnan(out).any()
    assert relative_error(out, expected) < 1e-2


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("config", [(32, 1, 2, 8, 0), (32, 1, 3, 9, 64), (16, 1, 4, 11, 2)])
def test_triton_tma_decode_reads_fp8(config: tuple[int, int, int, int, int]) -> None:
    """Pages' ids one step ahead, and preloaded 64 or 2 at a time (ids_block)."""
    pytest.importorskip("triton")
    from kernels.triton.decode_attention import DecodeConfig
    from kernels.triton.decode_attention_tma import decode_attention_tma, tma_supported

    if INTERPRET:
        pytest.skip("float8 tensors are not supported by Triton's CPU interpreter")
    batch = make_paged_batch([1] * 6, [1, 31, 64, 300, 1025, 2000], 6, 32, 8, 128, 16,
                             torch.bfloat16, DEVICE, 12)  # fmt: skip
    k8, v8 = _to_fp8(batch.k_cache, 0.9), _to_fp8(batch.v_cache, 1.1)
    if not tma_supported(batch.q, k8):
        pytest.skip("TMA needs a Hopper GPU")
    out = torch.full_like(batch.q, float("nan"))
    m = batch.meta
    decode_attention_tma(batch.q, k8, v8, m.block_tables, m.context_lens, m.max_context_len,
                         128**-0.5, out, num_sms=48,
                         config=DecodeConfig(*config[:4], tma=True, ids_block=config[4]),
                         k_scale=0.9, v_scale=1.1)  # fmt: skip
    expected = reference.paged_attention(batch.q, k8, v8, m, 128**-0.5, 0.9, 1.1)
    assert relative_error(out, expected) < 1e-2


@pytest.mark.gpu
@needs_triton_device
def test_triton_store_kv_fp8_matches_reference() -> None:
    pytest.importorskip("triton")
    from kernels.triton import store_kv

    if INTERPRET:
        pytest.skip("float8 tensors are not supported by Triton's CPU interpreter")
    gen = torch.Generator().manual_seed(4)
    k = (torch.randn(50, 8, 128, generator=gen) * 100).to(torch.bfloat16).to(DEVICE)
    v = torch.randn(50, 8, 128, generator=gen).to(torch.bfloat16).to(DEVICE)
    slots = torch.randperm(80, generator=gen)[:50].to(DEVICE)
    caches = [torch.zeros(5, 16, 8, 128, device=DEVICE).to(FP8) for _ in range(4)]
    store_kv(k, v, caches[0], caches[1], slots, 0.25, 2.0)
    reference.store_kv(k, v, caches[2], caches[3], slots, 0.25, 2.0)
    for ours, ref in ((caches[0], caches[2]), (caches[1], caches[3])):
        assert torch.equal(ours.view(torch.uint8), ref.view(torch.uint8))
