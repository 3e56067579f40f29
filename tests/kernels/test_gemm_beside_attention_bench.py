"""bench/gemm_beside_attention.py's arithmetic and its answers without a GPU: the floor of a
scenario (the slower side alone, or both sides' bytes at the HBM bandwidth), the ratios it
reports, the table of a record, and clear errors for unknown scenarios or a missing GPU."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from bench_scripts import load_bench

pytest.importorskip("triton")


def _bench():  # type: ignore[no-untyped-def]
    return load_bench("gemm_beside_attention")


def test_the_floor_and_the_ratios() -> None:
    b = _bench()
    s = b.SCENARIOS["fp8-500x1024-gate_up-500"]
    # 500 x 1024 tokens x 2 (K, V) x 8 heads x 128 x 1 byte, plus 28672 x 4096 bf16 weights
    assert b.bytes_moved(s) == 500 * 1024 * 2048 + 28672 * 4096 * 2
    bytes_ms = b.bytes_moved(s) / 4e12 * 1e3  # about 0.32 ms
    assert b.floor_ms(s, 0.25, 0.17, 4.0) == pytest.approx(bytes_ms)
    assert b.floor_ms(s, 0.5, 0.17, 4.0) == 0.5  # the attention alone is longer
    m = {"cublas_ms": 0.17, "gemm_role_ms": 0.2, "attention_ms": 0.25, "sequential_ms": 0.42,
         "two_streams_ms": 0.40, "shared_ms": 0.35}  # fmt: skip
    got = b.summary(s, m, 4.0)
    assert got["sequential_over_shared"] == 1.2 and got["two_streams_over_shared"] == 1.143
    assert got["floor_ms"] == pytest.approx(bytes_ms, abs=1e-4)
    assert got["sequential_over_floor"] == pytest.approx(0.42 / bytes_ms, abs=1e-3)


def test_the_table_and_clear_errors(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    b = _bench()
    record = {"results": [{"scenario": {"name": "fp8-x"}, "attention_ms": 0.25, "cublas_ms": 0.17,
                           "gemm_role_ms": 0.2, "sequential_ms": 0.42, "two_streams_ms": 0.4,
                           "shared_ms": 0.35, "floor_ms": 0.32, "sequential_over_shared": 1.2},
                          {"scenario": {"name": "no-config"}, "shared_ms": None}]}  # fmt: skip
    f = tmp_path / "r.json"
    f.write_text(json.dumps(record))
    assert b.main(["--table", str(f)]) == 0
    out = capsys.readouterr().out
    assert "| fp8-x | 0.250 | 0.170 | 0.200 | 0.420 | 0.400 | - | 0.350 | 0.320 | 1.2 |" in out
    assert "no-config" not in out
    assert b.main(["--reps", "0"]) == 2
    assert "--reps must be >= 1" in capsys.readouterr().err
    assert b.main(["--hbm-tb-s", "-1"]) == 2
    capsys.readouterr()
    assert b.main(["--scenarios", "nope"]) == 2
    assert "unknown scenario 'nope'" in capsys.readouterr().err
    if not torch.cuda.is_available():
        assert b.main(["--scenarios", "bf16-128x1024-gate_up-128"]) == 2
        assert "needs a CUDA GPU" in capsys.readouterr().err


@pytest.mark.skipif(torch.cuda.is_available(), reason="the CPU smoke run; the GPU runs the script")
def test_the_script_runs_end_to_end_on_the_interpreter() -> None:
    """A tiny bf16 scenario through every timing, the config sweep and the output check, on
    Triton's CPU interpreter: the script's plumbing, not its times (those need the GPU)."""
    from triton_env import INTERPRET

    if not INTERPRET:
        pytest.skip("needs TRITON_INTERPRET=1")
    b = _bench()
    s = b.Scenario("tiny", seqs=3, context=40, kv_dtype="bf16", rows=5, n=64, k=64)
    m = b.measure(s, sms=1, quick=True, reps=1, device="cpu")
    assert m["shared_ms"] > 0 and len(m["tried"]) == 2
    assert all("error" not in r for r in m["tried"])
    # the interpreter's bfloat16 dots are wrong (the kernel tests check values in float16):
    # here only that both outputs were compared
    assert m["max_abs_err_gemm"] >= 0 and m["max_abs_err_attention"] >= 0
    assert m["attention_engine_ms"] > 0 and m["two_streams_ms"] > 0
    assert m["capped_streams_ms"] is None  # two streams: the GPU only
    assert m["shared_config"]["interleave"] is False and m["shared_config"]["gemm"]["tma"]
    m.update(b.summary(s, m, 4.3))
    assert m["sequential_over_shared"] > 0
