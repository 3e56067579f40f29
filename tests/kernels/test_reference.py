"""CPU sanity of the torch reference operators against independent formulations."""

from __future__ import annotations

import pytest
import torch
from kernel_batches import dense_attention, make_paged_batch, relative_error

from kernels import reference


@pytest.mark.parametrize(
    ("q_lens", "ctx_lens", "num_decode"),
    [
        ([1, 1, 1], [5, 17, 33], 3),
        ([7, 16], [7, 40], 0),
        ([1, 1, 9, 3], [1, 64, 9, 50], 2),
    ],
)
@pytest.mark.parametrize(("num_q_heads", "num_kv_heads"), [(4, 4), (8, 2)])
def test_paged_attention_matches_dense(
    q_lens: list[int], ctx_lens: list[int], num_decode: int, num_q_heads: int, num_kv_heads: int
) -> None:
    batch = make_paged_batch(
        q_lens, ctx_lens, num_decode, num_q_heads, num_kv_heads, 32, 16, torch.float32, "cpu", 0
    )
    scale = 32**-0.5
    out = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, scale)
    assert relative_error(out, dense_attention(batch, scale)) < 1e-5


def test_store_kv_then_attention_reads_the_new_tokens() -> None:
    batch = make_paged_batch([3], [10], 0, 2, 2, 16, 4, torch.float32, "cpu", 1)
    new_k = torch.randn(3, 2, 16)
    new_v = torch.randn(3, 2, 16)
    reference.store_kv(new_k, new_v, batch.k_cache, batch.v_cache, batch.meta.slot_mapping)
    flat_k = batch.k_cache.view(-1, 2, 16)
    assert torch.equal(flat_k[batch.meta.slot_mapping], new_k)
    assert torch.equal(batch.v_cache.view(-1, 2, 16)[batch.meta.slot_mapping], new_v)


def test_rms_norm_unit_rms() -> None:
    x = torch.randn(5, 64) * 7
    out = reference.rms_norm(x, torch.ones(64), 1e-6)
    assert torch.allclose(out.pow(2).mean(-1), torch.ones(5), atol=1e-4)
    normed, summed = reference.add_rms_norm(x, x, torch.ones(64), 1e-6)
    assert torch.equal(summed, 2 * x)
    assert torch.allclose(normed, out, atol=1e-5)


def test_rotary_preserves_norm_and_position_zero_is_identity() -> None:
    q, k = torch.randn(4, 3, 8), torch.randn(4, 1, 8)
    angles = torch.rand(16, 4) * 6.28
    cos_sin = torch.cat([angles.cos(), angles.sin()], dim=-1)
    cos_sin[0] = torch.tensor([1.0] * 4 + [0.0] * 4)
    rq, rk = reference.rotary(q, k, torch.tensor([0, 3, 7, 15]), cos_sin)
    assert torch.allclose(rq.norm(dim=-1), q.norm(dim=-1), atol=1e-5)
    assert torch.equal(rq[0], q[0]) and torch.equal(rk[0], k[0])


def test_silu_and_mul() -> None:
    x = torch.randn(3, 10)
    expected = x[:, :5] * torch.sigmoid(x[:, :5]) * x[:, 5:]
    assert torch.allclose(reference.silu_and_mul(x), expected, atol=1e-6)


def _sampling_inputs(batch: int, vocab: int) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(3)
    logits = torch.randn(batch, vocab, generator=gen) * 3
    noise = torch.empty(batch, vocab).exponential_(generator=gen)
    return logits, noise


def test_sample_greedy_and_top_k_one_take_the_argmax() -> None:
    logits, noise = _sampling_inputs(4, 100)
    temperature = torch.tensor([0.0, 0.0, 1.0, 0.7])
    top_k = torch.tensor([0, 0, 1, 1])
    ones, zeros = torch.ones(4), torch.zeros(4)
    out = reference.sample(logits, temperature, ones, top_k, zeros, noise)
    assert torch.equal(out, logits.argmax(-1))


def test_sample_stays_inside_top_k() -> None:
    logits, noise = _sampling_inputs(64, 50)
    top_k = torch.full((64,), 5)
    out = reference.sample(logits, torch.ones(64), torch.ones(64), top_k, torch.zeros(64), noise)
    top5 = logits.topk(5, dim=-1).indices
    assert bool((top5 == out[:, None]).any(-1).all())


def test_sample_follows_the_distribution() -> None:
    vocab, draws = 4, 20000
    logits = torch.log(torch.tensor([0.1, 0.2, 0.3, 0.4])).expand(draws, vocab).contiguous()
    noise = torch.empty(draws, vocab).exponential_(generator=torch.Generator().manual_seed(5))
    ones, zeros = torch.ones(draws), torch.zeros(draws)
    out = reference.sample(logits, ones, ones, torch.zeros(draws, dtype=torch.long), zeros, noise)
    freq = torch.bincount(out, minlength=vocab).float() / draws
    assert torch.allclose(freq, torch.tensor([0.1, 0.2, 0.3, 0.4]), atol=0.015)


def test_sample_top_p_keeps_the_smallest_prefix() -> None:
    logits = torch.log(torch.tensor([[0.5, 0.3, 0.15, 0.05]])).expand(2000, 4).contiguous()
    noise = torch.empty(2000, 4).exponential_(generator=torch.Generator().manual_seed(6))
    ones, zeros = torch.ones(2000), torch.zeros(2000)
    top_p = torch.full((2000,), 0.7)  # keeps 0.5 (0 before it) and 0.3 (0.5 before it)
    out = reference.sample(logits, ones, top_p, torch.zeros(2000, dtype=torch.long), zeros, noise)
    assert set(out.tolist()) == {0, 1}


@pytest.mark.parametrize("with_bias", [False, True])
def test_linear_into_a_given_output(with_bias: bool) -> None:
    """``out=``: the product written into the caller's buffer (a decode graph's logits rows),
    the same as the returned one; 3-D inputs keep their leading shape."""
    g = torch.Generator().manual_seed(3)
    x, w = torch.randn(2, 3, 16, generator=g), torch.randn(8, 16, generator=g)
    b = torch.randn(8, generator=g) if with_bias else None
    buffer = torch.full((5, 8), float("nan"))
    out = torch.full((2, 3, 8), float("nan"))
    assert reference.linear(x, w, b, out=out) is out
    torch.testing.assert_close(out, reference.linear(x, w, b))
    rows = buffer[:3]  # the first rows of a larger buffer, as a graph's logits are
    reference.linear(x[0], w, b, out=rows)
    torch.testing.assert_close(rows, reference.linear(x[0], w, b))
    assert buffer[3:].isnan().all()
