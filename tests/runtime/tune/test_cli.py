"""``nanolang tune`` reusing a stored profile: writes a plan set and prints its path; a bad
profile is a one-line error with exit status 2."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanolang.cli import main
from runtime.pipeline.planset import PlanSet
from tests.runtime.tune.synthetic import synthetic_profile


def test_tune_from_a_stored_profile(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    prof = synthetic_profile(device_sms=32, per_sm_gb_s=300.0, slowdown=1.1)
    prof.save(tmp_path / "profile.json")
    out = tmp_path / "set"
    argv = ["tune", "--profile", str(tmp_path / "profile.json"), "--out", str(out),
            "--solver", "highs", "--max-nano-batches", "2", "--decode-points", "0,64,512",
            "--prefill-points", "0,512", "--context-points", "1024"]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out / "planset.json")
    planset = PlanSet.load(out / "planset.json")
    assert len(planset.buckets) == 3 * 2 - 1  # the grid, less the zero-token shape
    assert planset.plans and any(b.plan is None for b in planset.buckets)
    assert "buckets" in printed.err and "dense" in printed.err
    # a second run replaces the plan files of the first
    assert main(argv) == 0
    names = {p.name for p in out.glob("*.json")} - {"planset.json", "profile.json"}
    assert names == set(planset.plans)


def test_bad_profile_is_a_clear_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "p.json"
    path.write_text(json.dumps({"schema": "nanolang.tune.profile", "version": 7}))
    assert main(["tune", "--profile", str(path), "--out", str(tmp_path / "o")]) == 2
    assert "error: profile version 7 is not 1" in capsys.readouterr().err


def test_max_tokens_leaves_larger_shapes_dense(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--max-tokens`` bounds the shapes searched: a larger one is dense with the reason said;
    a bound below one row is a one-line error."""
    prof = synthetic_profile(device_sms=32, per_sm_gb_s=300.0, slowdown=1.1)
    prof.save(tmp_path / "profile.json")
    argv = ["tune", "--profile", str(tmp_path / "profile.json"), "--out", str(tmp_path / "set"),
            "--solver", "highs", "--max-nano-batches", "2", "--decode-points", "64,512",
            "--prefill-points", "0", "--context-points", "1024", "--max-tokens", "256"]  # fmt: skip
    assert main(argv) == 0
    planset = PlanSet.load(tmp_path / "set" / "planset.json")
    big = [b for b in planset.buckets if b.decodes == 512]
    assert len(big) == 1 and big[0].plan is None
    assert big[0].reason == "more than 256 tokens: not searched"
    small = [b for b in planset.buckets if b.decodes == 64]
    assert len(small) == 1 and "not searched" not in small[0].reason
    capsys.readouterr()
    assert main([*argv[:-1], "0"]) == 2
    assert "error: --max-tokens must be >= 1, got 0" in capsys.readouterr().err


def test_carve_sms_reaches_the_profile_grid() -> None:
    """``--carve-sms`` sets the budgets at which the GEMMs are also timed aimed at the rest of
    the SMs (the profiler's carve sides); a budget below one SM is refused."""
    from runtime.tune.__main__ import _profile_config
    from runtime.tune.options import build_parser
    from runtime.tune.profiler import ProfileConfig

    args = build_parser().parse_args(["--carve-sms", "16,32"])
    assert _profile_config(args, ProfileConfig()).carve_sms == (16, 32)
    assert _profile_config(build_parser().parse_args([]), ProfileConfig()).carve_sms == ()
    with pytest.raises(ValueError, match="SM budgets"):
        ProfileConfig(carve_sms=(0,))
