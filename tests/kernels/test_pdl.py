"""Programmatic dependent launch of the small Triton kernels (kernels.triton.pdl): off unless
NANOLANG_PDL=1, never on the CPU or the interpreter; on a Hopper GPU the kernels launched with it
give exactly what they give without it, eagerly and under a CUDA graph."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import pytest
import torch

pytest.importorskip("triton")
from kernels.triton import pdl


@pytest.fixture(autouse=True)
def fresh_choice() -> Iterator[None]:
    pdl.enabled.cache_clear()  # the choice is made once per process: each test makes its own
    yield
    pdl.enabled.cache_clear()


def test_off_by_default_and_a_bad_value_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(pdl.ENV, raising=False)
    assert not pdl.requested()
    monkeypatch.setenv(pdl.ENV, "1")
    assert pdl.requested()
    monkeypatch.setenv(pdl.ENV, "yes")
    with pytest.raises(ValueError, match="NANOLANG_PDL must be 0 or 1, got 'yes'"):
        pdl.requested()


def test_never_on_the_cpu_nor_the_interpreter(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(pdl.ENV, "1")
    assert not pdl.use_pdl(torch.zeros(1))
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    assert not pdl.supported()
    assert pdl.launch_options(False) == {} and pdl.launch_options(True) == {"launch_pdl": True}


def _hopper() -> bool:
    return torch.cuda.is_available() and torch.cuda.get_device_capability()[0] >= 9


def _chain(seed: int) -> Callable[[], list[torch.Tensor]]:
    """A decode layer's small kernels back to back on fresh inputs: norm, rope + KV store,
    decode attention split over long contexts and merged (gather and TMA kernels), fused
    add + norm, SiLU-and-mul; returns a function that runs them and gives every output."""
    from kernels.triton import add_rms_norm, rms_norm, rotary_store_kv, silu_and_mul
    from kernels.triton.decode_attention import decode_attention
    from kernels.triton.decode_attention_tma import decode_attention_tma

    g = torch.Generator(device="cuda").manual_seed(seed)
    kw = {"device": "cuda", "dtype": torch.bfloat16, "generator": g}
    seqs, hq, hk, d, page, ctx = 4, 32, 8, 128, 16, 3000
    blocks = seqs * (ctx // page + 1) + 1
    x = torch.randn(seqs, 4096, **kw)
    w = torch.randn(4096, **kw)
    qkv = torch.randn(seqs, (hq + 2 * hk) * d, **kw)
    k_cache = torch.randn(blocks, page, hk, d, **kw)
    v_cache = torch.randn(blocks, page, hk, d, **kw)
    tables = torch.arange(seqs * (ctx // page + 1), device="cuda", dtype=torch.int32)
    tables = tables.view(seqs, -1)
    lens = torch.tensor([ctx, 17, 1400, 2999], device="cuda", dtype=torch.int32)
    pos = (lens - 1).to(torch.int64)
    slots = tables[torch.arange(seqs, device="cuda"), pos // page].to(torch.int64) * page
    slots = slots + pos % page
    cos_sin = torch.randn(4096, d, device="cuda", dtype=torch.float32, generator=g)
    gate_up = torch.randn(seqs, 2 * 14336, **kw)

    def run() -> list[torch.Tensor]:
        normed = rms_norm(x, w, 1e-5)
        q, k, v = qkv.view(seqs, -1, d).split([hq, hk, hk], dim=1)
        q = rotary_store_kv(q, k, v, pos, cos_sin, k_cache, v_cache, slots)
        out = torch.empty_like(q)
        decode_attention(q, k_cache, v_cache, tables, lens, ctx, d**-0.5, out)
        out_tma = torch.empty_like(q)
        decode_attention_tma(q, k_cache, v_cache, tables, lens, ctx, d**-0.5, out_tma)
        added, summed = add_rms_norm(out.view(seqs, -1), x, w, 1e-5)
        act = silu_and_mul(gate_up)
        return [normed, q, out, out_tma, added, summed, act, k_cache.clone(), v_cache.clone()]

    return run


@pytest.mark.gpu
@pytest.mark.skipif(not _hopper(), reason="needs a Hopper (or later) GPU")
def test_kernels_launched_with_pdl_give_the_same_results(monkeypatch: pytest.MonkeyPatch) -> None:
    if not pdl.supported():
        pytest.skip("this Triton has no grid dependency control")
    results = {}
    for flag in ("0", "1"):
        monkeypatch.setenv(pdl.ENV, flag)
        pdl.enabled.cache_clear()
        assert pdl.use_pdl(torch.zeros(1, device="cuda")) == (flag == "1")
        run = _chain(7)
        eager = run()
        run()  # warm (compiles) before the capture
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph):
            captured = run()
        graph.replay()
        torch.cuda.synchronize()
        results[flag] = (eager, captured)
    for a, b in zip(results["0"][0] + results["0"][1], results["1"][0] + results["1"][1],
                    strict=True):  # fmt: skip
        assert torch.equal(a, b)
