"""The cost model calibrated from measured forwards: factors per layout from verify records, the
search pricing every segment of a layout with its factor, and the H200 records' fit."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.tune import BatchShape, SearchConfig, search_shape
from runtime.tune.calibrate import calibrated, factors, layout_of, main, measured_over
from runtime.tune.costs import DENSE, Costs, layouts
from runtime.tune.profiles import Profile
from tests.runtime.tune.synthetic import synthetic_profile

ROOT = Path(__file__).resolve().parents[3]
RESULTS = ROOT / "bench" / "results"
H200_RECORDS = [RESULTS / "2026-11-29-h200-llama-3-8b-nanoflow-candidates-verify.json",
                RESULTS / "2026-11-30-h200-llama-3-8b-nanoflow-explore-verify.json"]  # fmt: skip
H200_PROFILE = ROOT / "runtime/pipeline/plans/searched/llama-3-8b-h200/profile.json"


def record(dense: tuple[float, float], plan: tuple[float, float] | None, name: str = "") -> dict:
    """A verify bucket record: (predicted, measured) ms of dense and of a measured candidate."""
    r = {"decodes": 512, "prefill_tokens": 0, "context": 1024, "plan": None,
         "predicted_ms": dense[0], "dense_ms": dense[0], "dense_measured_ms": dense[1]}  # fmt: skip
    if plan is not None:
        r.update(candidate=f"candidates/{name}.json", candidate_ms=plan[0], measured="candidate",
                 plan_measured_ms=plan[1])  # fmt: skip
    return r


def test_layouts_are_read_off_searched_plan_names() -> None:
    assert layout_of("candidates/d1024-p0-c2048-512-512-grid80.json") == "grid:80"
    assert layout_of("d512-p2048-c1024-640-1920-carve16") == "carve:16"
    assert layout_of("d512-p0-c4096-256-256-streams") == "streams"
    assert layout_of("d64-p512-c1024-32-32-green48.json") == "green:48"
    with pytest.raises(ValueError, match="does not end with a searched layout"):
        layout_of("llama-3-8b-h200-decode.json")


def test_factors_are_medians_of_measured_over_predicted() -> None:
    rows = [record((10.0, 10.5), (9.0, 9.9), "d-grid80"),
            record((20.0, 21.0), (18.0, 20.7), "e-grid80"),
            record((30.0, 30.0), (28.0, 28.0), "f-grid64"),
            {**record((1.0, 1.0), None), "error": "RuntimeError()"}]  # fmt: skip
    assert factors(rows) == {"dense": 1.05, "grid:64": 1.0, "grid:80": pytest.approx(1.125)}


def test_the_search_prices_each_layout_with_its_factor() -> None:
    """Every segment on a layout is multiplied by its factor (the dense forward too); a layout
    never measured is priced as the worst measured one."""
    prof = synthetic_profile(device_sms=32, per_sm_gb_s=300.0, slowdown=1.1, grid=True)
    shape = BatchShape(512, 0, 1024)
    plain = Costs(prof, shape)
    opts = layouts(prof)
    grid = next(lay for lay in opts if lay.name.startswith("grid:"))
    other = next(lay for lay in opts if lay.name != grid.name)
    cal = calibrated(prof, [record((1.0, 1.1), (1.0, 1.3), f"x-grid{grid.name[5:]}")], "test")
    assert cal.notes["calibration"] == {"dense": 1.1, grid.name: 1.3}
    costs = Costs(cal, shape)
    assert costs.dense_layer_us() == pytest.approx(1.1 * plain.dense_layer_us())
    assert costs.us(grid, "att", 0, 256) == pytest.approx(1.3 * plain.us(grid, "att", 0, 256))
    assert costs.us(other, "post", 0, 256) == pytest.approx(1.3 * plain.us(other, "post", 0, 256))
    assert costs.us(DENSE, "pre", 0, 512) == pytest.approx(1.1 * plain.us(DENSE, "pre", 0, 512))
    # the search: dense 10% dearer; a pipeline no cheaper (its period may stay HBM-bound)
    cfg = SearchConfig(decode_points=(512,), prefill_points=(0,), context_points=(1024,),
                       max_nano_batches=2)  # fmt: skip
    before, after = search_shape(prof, shape, cfg), search_shape(cal, shape, cfg)
    assert after.dense_us == pytest.approx(1.1 * before.dense_us)
    if before.schedule is not None and after.schedule is not None:
        layers = prof.shape.num_layers
        assert after.schedule.forward_us(layers) >= before.schedule.forward_us(layers) - 1e-6


def test_the_h200_records_calibrate_the_shipped_profile(tmp_path: Path) -> None:
    """Five measured pipelines (attention capped at 64 or 80 SMs) and five dense forwards: the
    grid:80 layout runs 12% over its prediction, grid:64 2%, dense 5%."""
    out = tmp_path / "calibrated.json"
    argv = ["--profile", str(H200_PROFILE), "--verify", *map(str, H200_RECORDS), "--out", str(out)]
    assert main(argv) == 0
    prof = Profile.load(out)
    assert prof.notes["calibration"] == {"dense": 1.049, "grid:64": 1.0159, "grid:80": 1.1189}
    assert prof.notes["calibration_points"] == {"dense": 5, "grid:64": 2, "grid:80": 3}
    # fp8 passes are not used for a bf16 profile
    explore = json.loads(H200_RECORDS[1].read_text())
    assert len(measured_over(explore, "bfloat16")) == 3
    assert len(measured_over(explore, "float8_e4m3fn")) == 3
    bad = tmp_path / "empty.json"
    bad.write_text(json.dumps({"kv_cache_dtype": "float8_e4m3fn", "buckets": []}))
    assert main(["--profile", str(H200_PROFILE), "--verify", str(bad), "--out", str(out)]) == 2
