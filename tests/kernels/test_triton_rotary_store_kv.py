"""The fused Triton rope + KV store against the torch reference and against the two kernels it
replaces (rotary, then store_kv), on fresh random inputs: bf16 and float8 caches, the head shapes
of Llama-3-8B and of a TP=2 rank of Llama-3-70B, negative slots, CUDA graphs, batch sizes."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

pytest.importorskip("triton")
from triton_env import DEVICE, INTERPRET, needs_triton_device, randn, seeded, skip_if_interpreted

from kernels import reference
from kernels.triton import rotary, rotary_store_kv, store_kv
from kernels.triton.rotary_store_kv import rotary_store_kv_kernel

pytestmark = [pytest.mark.gpu, needs_triton_device]
needs_cuda = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")

FP8 = torch.float8_e4m3fn
HEADS = {"llama3-8b": (32, 8, 128), "llama3-70b-tp2": (32, 4, 128), "odd": (6, 3, 96)}
SCALES = {torch.bfloat16: (1.0, 1.0), FP8: (0.5, 2.0)}  # (k_scale, v_scale)
BLOCK_SIZE = 16


@dataclass
class Batch:
    q: torch.Tensor  # [T, Hq, D], a strided view of the QKV output, as the model passes it
    k: torch.Tensor
    v: torch.Tensor
    positions: torch.Tensor
    cos_sin: torch.Tensor
    k_cache: torch.Tensor
    v_cache: torch.Tensor
    slots: torch.Tensor
    k_scale: float
    v_scale: float

    def args(self, k_cache: torch.Tensor, v_cache: torch.Tensor) -> tuple:  # type: ignore[type-arg]
        return (self.q, self.k, self.v, self.positions, self.cos_sin, k_cache, v_cache,
                self.slots, self.k_scale, self.v_scale)  # fmt: skip

    def caches(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.k_cache.clone(), self.v_cache.clone()


def make_batch(
    tokens: int, heads: tuple[int, int, int], cache_dtype: torch.dtype, seed: int,
    negative: int = 0,
) -> Batch:  # fmt: skip
    """Random q / k / v (k large enough that a float8 cache saturates some entries), positions
    up to 8,192, caches full of other values, distinct slots (the first ``negative`` are -1)."""
    num_q, num_kv, dim = heads
    width = (num_q + 2 * num_kv) * dim
    qkv = randn(tokens, width, dtype=torch.bfloat16, seed=seed, scale=4.0)
    q, k, v = qkv.split([num_q * dim, num_kv * dim, num_kv * dim], -1)
    if cache_dtype == FP8:
        k.mul_(60.0)  # beyond 448 x k_scale for some entries: they saturate
    num_blocks = (tokens + BLOCK_SIZE - 1) // BLOCK_SIZE + 3
    shape = (num_blocks, BLOCK_SIZE, num_kv, dim)
    k_cache = randn(*shape, dtype=torch.bfloat16, seed=seed + 1).to(cache_dtype)
    v_cache = randn(*shape, dtype=torch.bfloat16, seed=seed + 2).to(cache_dtype)
    slots = torch.randperm(num_blocks * BLOCK_SIZE, generator=seeded(seed))[:tokens]
    slots[:negative] = -1
    positions = torch.randint(0, 8192, (tokens,), generator=seeded(seed + 3))
    inv_freq = 1.0 / (500000.0 ** (torch.arange(0, dim, 2).float() / dim))
    angles = torch.arange(8192).float()[:, None] * inv_freq[None, :]
    cos_sin = torch.cat([angles.cos(), angles.sin()], dim=-1)
    return Batch(
        q.view(tokens, num_q, dim), k.view(tokens, num_kv, dim), v.view(tokens, num_kv, dim),
        positions.to(DEVICE), cos_sin.to(DEVICE), k_cache, v_cache, slots.to(DEVICE),
        *SCALES[cache_dtype],
    )  # fmt: skip


def _bytes(cache: torch.Tensor) -> torch.Tensor:
    return cache.view(torch.uint8) if cache.dtype == FP8 else cache


def _check(batch: Batch) -> None:
    """The fused kernel writes the bytes of the rotary kernel's k stored by the reference store
    (and, on the GPU, of the store kernel), returns the rotary kernel's q, and is within one
    rounding step of the torch reference end to end."""
    k_cache, v_cache = batch.caches()
    q_out = rotary_store_kv(*batch.args(k_cache, v_cache))
    q_rot, k_rot = rotary(batch.q, batch.k, batch.positions, batch.cos_sin)
    assert torch.equal(q_out, q_rot)
    keep = batch.slots >= 0  # the reference store has no negative slots: the test drops them
    exp_k, exp_v = batch.caches()
    args = (exp_k, exp_v, batch.slots[keep], batch.k_scale, batch.v_scale)
    reference.store_kv(k_rot[keep], batch.v[keep], *args)
    assert torch.equal(_bytes(k_cache), _bytes(exp_k))
    assert torch.equal(_bytes(v_cache), _bytes(exp_v))
    if not INTERPRET:  # the interpreter has no float8 tensors for the store kernel
        two_k, two_v = batch.caches()
        store_kv(k_rot, batch.v, two_k, two_v, batch.slots, batch.k_scale, batch.v_scale)
        assert torch.equal(_bytes(k_cache), _bytes(two_k))
        assert torch.equal(_bytes(v_cache), _bytes(two_v))
    ref_k, ref_v = batch.caches()
    ref_q = reference.rotary_store_kv(
        batch.q[keep], batch.k[keep], batch.v[keep], batch.positions[keep], batch.cos_sin,
        ref_k, ref_v, batch.slots[keep], batch.k_scale, batch.v_scale,
    )  # fmt: skip
    bf16 = {"rtol": 1.6e-2, "atol": 1.6e-2}
    torch.testing.assert_close(q_out[keep], ref_q, **bf16)
    for ours, ref, scale in ((k_cache, ref_k, batch.k_scale), (v_cache, ref_v, batch.v_scale)):
        ours_f, ref_f = reference.dequantize_kv(ours, scale), reference.dequantize_kv(ref, scale)
        if ours.dtype == FP8:  # one float8 step (3 mantissa bits) where bf16 rounding differs
            assert ((ours_f - ref_f).abs() <= ref_f.abs() / 8 + 2**-9 * scale).all()
        else:
            torch.testing.assert_close(ours_f, ref_f, **bf16)


@pytest.mark.parametrize("cache_dtype", [torch.bfloat16, FP8], ids=["bf16", "fp8"])
@pytest.mark.parametrize("shape", sorted(HEADS))
def test_fused_matches_rotary_then_store(shape: str, cache_dtype: torch.dtype) -> None:
    _check(make_batch(6, HEADS[shape], cache_dtype, seed=len(shape)))


@pytest.mark.parametrize("cache_dtype", [torch.bfloat16, FP8], ids=["bf16", "fp8"])
def test_negative_slots_are_skipped(cache_dtype: torch.dtype) -> None:
    _check(make_batch(5, HEADS["llama3-70b-tp2"], cache_dtype, seed=11, negative=2))


def test_empty_batch_returns_an_empty_q() -> None:
    batch = make_batch(0, HEADS["odd"], torch.bfloat16, seed=12)
    k_cache, v_cache = batch.caches()
    assert rotary_store_kv(*batch.args(k_cache, v_cache)).shape == (0, 6, 96)
    assert torch.equal(k_cache, batch.k_cache)


# real sizes: 256 and 1,000 decode rows, an 8,192-token mixed batch (GPU only)
@pytest.mark.parametrize("cache_dtype", [torch.bfloat16, FP8], ids=["bf16", "fp8"])
@pytest.mark.parametrize("shape", ["llama3-8b", "llama3-70b-tp2"])
@pytest.mark.parametrize("tokens", [256, 1000, 8192])
def test_fused_at_real_sizes(tokens: int, shape: str, cache_dtype: torch.dtype) -> None:
    skip_if_interpreted(True)
    _check(make_batch(tokens, HEADS[shape], cache_dtype, seed=tokens, negative=tokens // 100))


def _compiled_variants() -> int:
    return len(rotary_store_kv_kernel.device_caches[torch.cuda.current_device()][0])


@needs_cuda
@pytest.mark.parametrize("cache_dtype", [torch.bfloat16, FP8], ids=["bf16", "fp8"])
def test_new_batch_sizes_compile_nothing(cache_dtype: torch.dtype) -> None:
    batches = [make_batch(n, HEADS["llama3-8b"], cache_dtype, seed=n) for n in (3, 1, 256, 77)]
    rotary_store_kv(*batches[0].args(*batches[0].caches()))
    before = _compiled_variants()
    for batch in batches[1:]:
        rotary_store_kv(*batch.args(*batch.caches()))
    assert _compiled_variants() == before


@needs_cuda
@pytest.mark.parametrize("cache_dtype", [torch.bfloat16, FP8], ids=["bf16", "fp8"])
def test_captures_in_a_cuda_graph(cache_dtype: torch.dtype) -> None:
    """Captured once, replayed over new positions and slots (padding rows at slot -1) written
    into the captured buffers: the same bytes as eager calls on those inputs."""
    first = make_batch(64, HEADS["llama3-70b-tp2"], cache_dtype, seed=21)
    k_cache, v_cache = first.caches()
    args = first.args(k_cache, v_cache)
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side):
        rotary_store_kv(*args)  # compiles outside the capture
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        q_out = rotary_store_kv(*args)
    second = make_batch(64, HEADS["llama3-70b-tp2"], cache_dtype, seed=22, negative=9)
    for mine, new in ((first.q, second.q), (first.k, second.k), (first.v, second.v)):
        mine.copy_(new)
    first.positions.copy_(second.positions)
    first.slots.copy_(second.slots)
    k_cache.copy_(second.k_cache)
    v_cache.copy_(second.v_cache)
    graph.replay()
    exp_k, exp_v = second.caches()
    expected = rotary_store_kv(*second.args(exp_k, exp_v))
    torch.cuda.synchronize()
    assert torch.equal(q_out, expected)
    assert torch.equal(_bytes(k_cache), _bytes(exp_k))
    assert torch.equal(_bytes(v_cache), _bytes(exp_v))
