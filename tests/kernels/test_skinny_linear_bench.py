"""bench/skinny_linear.py's table writer: only measured wins that are as accurate as torch's own
product become entries of the kernel's table, for the GPU they were measured on; other GPUs'
entries stay; the written table is one the kernel reads."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_bench

pytest.importorskip("triton")
from kernels.triton.linear import LinearConfig, _table


def _bench():  # type: ignore[no-untyped-def]
    return load_bench("skinny_linear")


CONFIG = {"block_m": 64, "block_n": 128, "block_k": 64, "num_stages": 4, "num_warps": 4}


def _result(rows: int, torch_us: float, triton_us: float, err: float = 0.01) -> dict:
    return {"model": "m", "projection": "o_proj", "rows": rows, "n": 4096, "k": 4096,
            "torch_us": torch_us, "triton_us": triton_us, "config": CONFIG,
            "max_abs_err": err, "torch_err": 0.01, "torch_tflops": 1.0,
            "triton_tflops": 2.0}  # fmt: skip


def test_only_accurate_wins_by_the_margin_are_written(tmp_path: Path) -> None:
    bench = _bench()
    path = tmp_path / "configs.json"
    other = {"device": "Other GPU", "rows": 128, "n": 1, "k": 16, "dtype_bytes": 2,
             "config": CONFIG, "torch_us": 2.0, "triton_us": 1.0}  # fmt: skip
    path.write_text(json.dumps({"entries": [other]}))
    results = [
        _result(256, 17.0, 12.0),  # a win
        _result(128, 10.0, 9.9),  # under the 3% margin
        _result(512, 30.0, 20.0, err=5.0),  # faster but wrong
        {"model": "m", "projection": "o_proj", "rows": 64, "n": 4096, "k": 4096,
         "torch_us": 8.0, "configs_failed": 36},  # no config ran
    ]  # fmt: skip
    assert bench.write_table(path, "NVIDIA H200", results, 0.03) == 1
    written = json.loads(path.read_text())["entries"]
    assert [(e["device"], e["rows"]) for e in written] == [("Other GPU", 128), ("NVIDIA H200", 256)]
    assert _table(path)[("NVIDIA H200", 256, 4096, 4096, 2)] == LinearConfig(**CONFIG)
    table = bench.table({"results": results})
    assert "| m | o_proj | 256 | 4096 x 4096 | 17.0 (1.0) | 12.0 (2.0) | 0.706 |" in table
    assert "| m | o_proj | 64 | 4096 x 4096 | 8.0 (-) | - | - | - |" in table


def test_a_probe_of_some_rows_keeps_this_gpus_other_rows(tmp_path: Path) -> None:
    """A --rows 16,32 probe replaces this GPU's 16- and 32-row entries and keeps its 64-128-row
    ones (before, it dropped every entry of the GPU it ran on)."""
    bench = _bench()
    path = tmp_path / "configs.json"

    def entry(rows: int) -> dict:
        return {"device": "NVIDIA H200", "rows": rows, "n": 4096, "k": 4096, "dtype_bytes": 2,
                "config": CONFIG, "torch_us": 9.0, "triton_us": 8.0}  # fmt: skip

    other_shape = {**entry(16), "n": 6144}  # a 16-row shape this run did not reach
    path.write_text(json.dumps({"entries": [entry(16), entry(64), entry(128), other_shape]}))
    assert bench.write_table(path, "NVIDIA H200", [_result(16, 9.0, 9.5), _result(32, 9.0, 7.0)],
                             0.03) == 1  # fmt: skip
    written = json.loads(path.read_text())["entries"]
    # the old 16-row win is gone (this run measured it slower), 32 is new, 64 and 128 are kept,
    # and so is the 16-row shape the run did not measure
    assert sorted((e["rows"], e["n"]) for e in written) == [(16, 6144), (32, 4096), (64, 4096),
                                                            (128, 4096)]  # fmt: skip


def test_every_candidate_config_is_valid() -> None:
    configs = _bench().candidates()
    assert configs and all(isinstance(c, LinearConfig) for c in configs)


def test_bad_arguments_are_refused_before_the_gpu_is_asked_for(
    capsys: pytest.CaptureFixture[str],
) -> None:
    bench = _bench()
    assert bench.main(["--rows", "x,3"]) == 2
    assert "--rows takes positive integers, got 'x,3'" in capsys.readouterr().err
    assert bench.main(["--models", "gpt-5"]) == 2
    assert "unknown model 'gpt-5'" in capsys.readouterr().err


def test_decode_tail_rows_get_narrow_deep_tiles_that_fit_shared_memory() -> None:
    """Up to 32 rows the probe tries 16-32-row tiles, 32-128 columns wide, 128-256 deep; above,
    the 64-128-row tiles; every candidate's pipeline fits the shared-memory budget."""
    bench = _bench()
    small, large = bench.candidates(16), bench.candidates(64)
    assert bench.candidates(1) == small == bench.candidates(32)
    assert {c.block_m for c in small} == {16, 32} and {c.block_m for c in large} == {64, 128}
    assert {c.block_n for c in small} == {32, 64, 128} and {c.block_k for c in small} == {128, 256}
    for c in small + large:
        assert (c.block_m + c.block_n) * c.block_k * 2 * c.num_stages <= bench.SMEM_BYTES
    # 4,096 columns in 32-column tiles: 128 programs, about one per SM of an H200
    assert min(c.block_n for c in small) * 128 == 4096
    assert bench.ROWS[:2] == (16, 32)
