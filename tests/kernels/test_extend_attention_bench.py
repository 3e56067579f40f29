"""bench/extend_attention.py's batches (built on the CPU here): a context that ends mid-page gets
its last page, the host tuples FlashInfer's planner reads are there, the batch matches the
reference's own attention, and a shape whose chunk is longer than its context is refused."""

from __future__ import annotations

import pytest
import torch
from bench_scripts import load_bench

pytest.importorskip("triton")
from kernels import reference


def test_a_context_ending_mid_page_gets_its_last_page_and_host_tuples() -> None:
    bench = load_bench("extend_attention")
    b = bench.make_batch("2x20@37", torch.bfloat16, device="cpu")
    meta = b["meta"]
    assert meta.block_tables.shape == (2, 3)  # 37 tokens: 3 pages of 16
    assert sorted(meta.block_tables.flatten().tolist()) == list(range(6))
    assert meta.cu_seqlens_q_host == (0, 20, 40) and meta.context_lens_host == (37, 37)
    assert b["q"].shape == (40, bench.HEADS, bench.HEAD_DIM)
    # 20 new tokens at the end of 37: query j sees 17 + j + 1 keys
    assert b["flops"] == 4 * bench.HEAD_DIM * bench.HEADS * 2 * sum(18 + j for j in range(20))
    out = reference.paged_attention(b["q"].float(), b["k"].float(), b["v"].float(), meta, 0.1)
    assert out.shape == b["q"].shape and torch.isfinite(out).all()


@pytest.mark.parametrize("shape", ["2x40@37", "2x0@37"])
def test_a_chunk_longer_than_its_context_is_refused(shape: str) -> None:
    bench = load_bench("extend_attention")
    with pytest.raises(ValueError, match="new tokens must be 1 to the context's length"):
        bench.make_batch(shape, torch.bfloat16, device="cpu")


@pytest.mark.parametrize("bad", ["8x1024", "0x16@16", "8x@16", "ax1@2"])
def test_a_malformed_shape_is_refused_before_any_gpu_work(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bench = load_bench("extend_attention")
    with pytest.raises(ValueError, match="expected NxQ@CTX"):
        bench.parse_shape(bad)
    with pytest.raises(SystemExit):
        bench.main(["--shapes", f"8x1024@1024,{bad}"])
    assert "expected NxQ@CTX" in capsys.readouterr().err


def test_an_unknown_cache_dtype_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        load_bench("extend_attention").main(["--kv-dtypes", "bf16,int4"])
    assert "--kv-dtypes: unknown 'int4'" in capsys.readouterr().err


def test_flashinfer_is_timed_only_where_it_runs(monkeypatch: pytest.MonkeyPatch) -> None:
    """Where flashinfer is importable, a 16-bit cache is timed through the engine's FlashInfer
    backend (a stand-in module here: flashinfer is not installed on the CPU machine), a float8
    one is not (the backend hands it to its Triton fallback); without flashinfer, nothing."""
    import importlib.util
    import sys
    import types

    bench = load_bench("extend_attention")
    b16 = bench.make_batch("1x16@16", torch.bfloat16, device="cpu")
    b8 = bench.make_batch("1x16@16", torch.float8_e4m3fn, device="cpu")
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: None)
    assert bench.flashinfer_case(b16) is None
    calls = []

    class Backend:
        def __init__(self, device: torch.device) -> None:
            calls.append(device)

        def forward(self, q, k, v, meta, scale):  # type: ignore[no-untyped-def]
            calls.append((q.shape, meta is b16["meta"], scale))

    stand_in = types.ModuleType("kernels.attention.flashinfer_attention")
    stand_in.FlashInferAttention = Backend  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "kernels.attention.flashinfer_attention", stand_in)
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: object())
    assert bench.flashinfer_case(b8) is None
    call = bench.flashinfer_case(b16)
    assert call is not None
    call()
    assert calls == [torch.device("cpu"), (b16["q"].shape, True, bench.HEAD_DIM**-0.5)]
