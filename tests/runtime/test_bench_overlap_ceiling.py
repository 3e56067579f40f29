"""bench/overlap_ceiling.py: the generous two-nano-batch bound on hand-made measurements whose
answer is known."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _ceiling():  # type: ignore[no-untyped-def]
    spec = importlib.util.spec_from_file_location(
        "overlap_ceiling", ROOT / "bench/overlap_ceiling.py"
    )
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["overlap_ceiling"] = module  # its dataclass looks its module up
    spec.loader.exec_module(module)
    return module


def _probe(us_full: float, us_half: float) -> list[dict[str, object]]:
    """Each of the four projections takes us_full / 4 at 8 rows and us_half / 4 at 4."""
    return [{"model": "m", "projection": p, "rows": rows, "torch_us": us / 4}
            for p in ("qkv_proj", "o_proj", "gate_up_proj", "down_proj")
            for rows, us in ((8, us_full), (4, us_half))]  # fmt: skip


def _profile(busy: float, gemm: float, seqs: int = 8) -> dict[str, object]:
    return {"device_busy_ms_per_iteration": busy, "device_ms_per_iteration": {"gemm": gemm},
            "mean_batch_seqs": seqs}  # fmt: skip


def test_split_gemms_that_cost_more_than_they_hide_bound_the_step() -> None:
    oc = _ceiling()
    # 10 layers of 400 us at 8 rows (4 ms alone) and 300 us at 4 rows (two halves: 6 ms alone);
    # the engine's GEMMs take 5 ms (1.25x the probe), so split they take 7.5 ms; the rest is 4 ms
    step = oc.decode_ceiling(_profile(9.0, 5.0), _probe(400, 300), "m", 10)
    assert step.split_gemm_ms == pytest.approx(7.5)
    assert step.ceiling == pytest.approx(9.0 / 7.5, abs=1e-4)


def test_when_the_rest_is_longer_than_the_split_gemms_it_bounds_the_step() -> None:
    oc = _ceiling()
    step = oc.decode_ceiling(_profile(20.0, 5.0), _probe(400, 220), "m", 10)  # split 5.5, rest 15
    assert step.ceiling == pytest.approx(20.0 / 15.0, abs=1e-4)


def test_a_whole_run_weighs_each_kind_of_iteration_by_its_time() -> None:
    oc = _ceiling()
    mixed = oc.mixed_ceiling(_profile(100.0, 80.0))  # 100 / 80 = 1.25
    assert mixed.ceiling == pytest.approx(1.25)
    decode = oc.StepCeiling(10.0, 6.0, 8.0, 1.25)
    record = {"workload": "w", "iterations": 110, "mixed_iterations": 10,
              "iteration_ms_by_kind": {"mixed": 100.0, "decode": 10.0}}  # fmt: skip
    run = oc.run_ceiling(record, mixed, decode)  # 1 s + 1 s, each 1.25x faster at best
    assert (run["mixed_s"], run["decode_s"], run["ceiling"]) == (1.0, 1.0, 1.25)


def test_rows_between_probed_counts_are_interpolated() -> None:
    oc = _ceiling()
    # 300 us at 4 rows, 400 at 8: 350 at 6
    assert oc.layer_gemm_us(_probe(400, 300), "m", 6) == pytest.approx(350.0)
    assert oc.layer_gemm_us(_probe(400, 300), "m", 8) == pytest.approx(400.0)


def test_a_probe_without_the_half_rows_is_refused() -> None:
    oc = _ceiling()
    probe = [r for r in _probe(400, 300) if r["rows"] == 8]
    with pytest.raises(ValueError, match="around 4 rows"):
        oc.decode_ceiling(_profile(9.0, 5.0), probe, "m", 10)


def test_a_probe_with_two_speeds_at_one_row_count_is_refused() -> None:
    """Two probes merged into one file: which speed holds there is ambiguous, a clear error (it
    was a ZeroDivisionError at the lower row count, one of the two speeds silently above it)."""
    oc = _ceiling()
    probe = [*_probe(400, 300), *_probe(410, 310)[1:2]]  # qkv_proj twice at 4 rows
    for rows in (4, 6, 8):
        with pytest.raises(ValueError, match="qkv_proj for m more than once"):
            oc.layer_gemm_us(probe, "m", rows)
