"""Re-profiling what changed: ``nanolang tune --profile P --reprofile attention`` measures only
attention (and its interference) and keeps the stored profile's other timings; the merge
never mixes two builds in one curve."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from nanolang.cli import main
from runtime.pipeline.planset import PlanSet
from runtime.tune import Profile, ProfileError
from runtime.tune.costs import DENSE, BatchShape, Costs
from runtime.tune.profiler import QUICK, Only
from runtime.tune.profiles import Interference, merge_profiles
from runtime.tune.tuner import measure
from tests.runtime.tune.synthetic import synthetic_profile


def _scaled(prof: Profile, op: str, phase: str, factor: float) -> tuple:
    return tuple(replace(t, ms=t.ms * factor) for t in prof.timings
                 if t.op == op and t.phase == phase)  # fmt: skip


def test_merge_replaces_the_remeasured_curves_only() -> None:
    notes = {"calibration": {"grid:8": 1.1}, "kv_cache_dtype": "bfloat16", "partners": "old"}
    stored = replace(synthetic_profile(slowdown=1.2), notes=notes)
    fast = _scaled(stored, "attention", "decode", 0.5)[:-1]  # one size fewer than stored
    pair = Interference("attention", "qkv_proj", "green:8", 1024, 1.05, "green:24")
    fresh = replace(stored, timings=fast, interference=(pair,), created="new",
                    notes={"kv_cache_dtype": "float8_e4m3fn", "seconds": 1.0})  # fmt: skip
    merged = merge_profiles(stored, fresh)
    decode = {t for t in merged.timings if t.phase == "decode"}
    assert decode == set(fast)  # the stored decode curves are gone, even the size not redone
    assert {t for t in merged.timings if t.phase != "decode"} == {
        t for t in stored.timings if t.phase != "decode"
    }
    assert merged.interference == (pair,)
    assert merged.notes["kv_cache_dtype"] == "float8_e4m3fn"
    assert "calibration" not in merged.notes and merged.notes["merged"]["calibration_dropped"]
    assert merged.notes["merged"]["replaced"] == ["attention decode"]
    assert "partners" not in merged.notes  # described the stored interference, now replaced
    # the merged profile is answerable: decode attention costs half of what it did, without
    # the stored calibration (x1.1 on every layout)
    shape = BatchShape(256, 0, 1024)
    half = 0.5 * Costs(stored, shape).us(DENSE, "att", 0, 256) / 1.1
    assert Costs(merged, shape).us(DENSE, "att", 0, 256) == pytest.approx(half, rel=1e-6)
    # no interference re-measured: the stored entries stay
    kept = merge_profiles(stored, replace(fresh, interference=()))
    assert kept.interference == stored.interference and kept.notes["partners"] == "old"


def test_merge_refuses_another_model_or_device_and_an_empty_profile() -> None:
    stored = synthetic_profile()
    with pytest.raises(ProfileError, match="different device_sms"):
        merge_profiles(stored, synthetic_profile(device_sms=64))
    with pytest.raises(ProfileError, match="measured nothing"):
        merge_profiles(stored, replace(stored, timings=()))


def test_an_fp8_profile_prices_one_byte_per_kv_element() -> None:
    bf16 = synthetic_profile()
    fp8 = replace(bf16, notes={"kv_cache_dtype": "float8_e4m3fn"})
    shape = BatchShape(512, 0, 2048)
    assert Costs(fp8, shape).bytes("att", 0, 512) * 2 == Costs(bf16, shape).bytes("att", 0, 512)
    assert Costs(fp8, shape).bytes("pre", 0, 512) == Costs(bf16, shape).bytes("pre", 0, 512)


def test_reprofile_decode_attention_over_fp8_on_the_cpu(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stored profile (float32 KV) keeps every timing but decode attention, which the tiny
    model's real operations re-measure over a float8 cache; the search writes an fp8 plan set."""
    stored = measure(tiny_llama, QUICK, "stored", dtype="float32", device="cpu")
    stored.save(tmp_path / "stored.json")
    out = tmp_path / "set"
    argv = ["tune", "--model", tiny_llama, "--device", "cpu", "--dtype", "float32", "--quick",
            "--kv-cache-dtype", "fp8", "--profile", str(tmp_path / "stored.json"),
            "--reprofile", "decode-attention", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    printed = capsys.readouterr()
    assert printed.out.strip() == str(out / "planset.json")
    assert "re-measured" in printed.err and "decode-attention timings" in printed.err
    merged = Profile.load(out / "profile.json")
    assert merged.notes["kv_cache_dtype"] == "float8_e4m3fn"
    assert merged.notes["merged"]["fresh"]["config"]["only"] == Only.DECODE_ATTENTION.value
    assert {t for t in merged.timings if t.phase != "decode"} == {
        t for t in stored.timings if t.phase != "decode"
    }
    redone = {(t.tokens, t.context) for t in merged.timings if t.phase == "decode"}
    assert redone == {(t, c) for t in QUICK.attention_tokens for c in QUICK.contexts}
    assert PlanSet.load(out / "planset.json").kv_cache_dtype == "float8_e4m3fn"


def test_reprofile_needs_a_stored_profile(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["tune", "--reprofile", "attention", "--out", str(tmp_path)]) == 2
    assert "--reprofile needs --profile" in capsys.readouterr().err


def test_reprofile_checks_the_stored_profile_before_measuring(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "p.json"
    path.write_text("{}")
    argv = ["tune", "--model", "no-such-model", "--profile", str(path), "--reprofile",
            "attention", "--out", str(tmp_path / "o")]  # fmt: skip
    assert main(argv) == 2
    assert "not a profile" in capsys.readouterr().err
