"""Profiles: measured on the CPU from the tiny model's real operations (through the kernels
registry), stored as versioned JSON and reused; the schema rejects what it cannot answer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from runtime.pipeline.plans import LLAMA_OPS
from runtime.pipeline.planset import PlanSet
from runtime.tune import Profile, ProfileError
from runtime.tune.profiler import QUICK
from runtime.tune.profiles import OpTiming
from runtime.tune.search import QUICK_SEARCH
from runtime.tune.tuner import measure, tune
from tests.runtime.tune.synthetic import synthetic_profile


@pytest.fixture(scope="module")
def cpu_profile(tiny_llama: str) -> Profile:
    return measure(tiny_llama, QUICK, "test", dtype="float32", device="cpu")


def test_cpu_profile_covers_every_operation(cpu_profile: Profile) -> None:
    p = cpu_profile
    assert [n for n, _ in p.ops] == list(LLAMA_OPS)
    assert p.device == "cpu" and not p.concurrent and p.interference == ()
    assert p.notes["failures"] == [] and p.hbm_gb_s > 0
    assert p.shape.num_layers == 2 and p.shape.dtype_bytes == 4
    assert p.notes["kv_cache_dtype"] == "float32"  # the KV cache attention was timed over
    for op in LLAMA_OPS:
        if op == "attention":
            for phase in ("decode", "prefill"):
                got = {(t.tokens, t.context) for t in p.timings if t.phase == phase}
                assert got == {(t, c) for t in QUICK.attention_tokens for c in QUICK.contexts}
        else:
            got = {t.tokens for t in p.timings if t.op == op}
            assert got == set(QUICK.tokens)
    assert all(t.placement == "whole" and t.ms > 0 for t in p.timings)


def test_profile_round_trip_and_reuse(cpu_profile: Profile, tmp_path: Path) -> None:
    cpu_profile.save(tmp_path / "p.json")
    again = Profile.load(tmp_path / "p.json")
    assert again == cpu_profile
    # the search reuses a stored profile: the CPU runs one stream at a time, so all dense
    _, _, results, path = tune("unused", tmp_path / "out", tmp_path / "p.json",
                                     search_cfg=QUICK_SEARCH)  # fmt: skip
    assert all(r.plan is None for r in results)
    assert {b.reason for b in PlanSet.load(path).buckets} == {
        "the device runs one stream at a time: nothing can overlap"
    }
    assert (tmp_path / "out" / "profile.json").exists()
    assert PlanSet.load(path).kv_cache_dtype == "float32"  # the profile's, recorded in the set


def test_an_fp8_profile_makes_an_fp8_plan_set(tiny_llama: str, tmp_path: Path) -> None:
    """``nanolang tune --kv-cache-dtype fp8``: attention timed over a float8 cache, and the plan
    set says so (the engine then uses it only with kv_cache_dtype='fp8')."""
    prof = measure(tiny_llama, QUICK, "test", dtype="float32", device="cpu", kv_cache_dtype="fp8")
    assert prof.notes["kv_cache_dtype"] == "float8_e4m3fn"
    _, planset, _, path = tune("unused", tmp_path / "fp8", prof, search_cfg=QUICK_SEARCH)
    assert planset.kv_cache_dtype == PlanSet.load(path).kv_cache_dtype == "float8_e4m3fn"


def test_schema_version_and_contents_are_checked(tmp_path: Path) -> None:
    d = synthetic_profile(concurrent=False).to_dict()
    path = tmp_path / "p.json"
    path.write_text(json.dumps({**d, "version": 0}))
    with pytest.raises(ProfileError, match="version 0 is not 1"):
        Profile.load(path)
    path.write_text(json.dumps({**d, "schema": "something"}))
    with pytest.raises(ProfileError, match="not a profile"):
        Profile.load(path)
    path.write_text("{")
    with pytest.raises(ProfileError, match="not JSON"):
        Profile.load(path)
    good = Profile.from_dict(d)
    with pytest.raises(ProfileError, match="unknown operation"):
        replace(good, timings=(OpTiming("mystery", "whole", 4, 1.0),))
    with pytest.raises(ProfileError, match="bad placement"):
        replace(good, timings=(OpTiming("act", "green:x", 4, 1.0),))
    with pytest.raises(ProfileError, match="exceeds the device"):
        replace(good, timings=(OpTiming("act", "green:64", 4, 1.0),))
    with pytest.raises(ProfileError, match="need a phase"):
        replace(good, timings=(OpTiming("attention", "whole", 4, 1.0),))


def test_interpolation_between_and_beyond_measured_sizes() -> None:
    p = synthetic_profile(concurrent=False)
    at = {t.tokens: t.ms for t in p.timings if t.op == "gate_up_proj"}
    mid = p.time_ms("gate_up_proj", "whole", 192)
    assert mid == pytest.approx((at[128] + at[256]) / 2)
    assert p.time_ms("gate_up_proj", "whole", 1) == at[16]  # never below the smallest measured
    assert p.time_ms("gate_up_proj", "whole", 0) == 0.0
    slope = (at[4096] - at[2048]) / 2048
    assert p.time_ms("gate_up_proj", "whole", 5000) == pytest.approx(at[4096] + slope * 904)
    with pytest.raises(ProfileError, match="no timings of act on green:8"):
        p.time_ms("act", "green:8", 16)
    assert p.slowdown("act", "attention", "whole", 16) == 1.0  # none measured


def test_slowdown_is_looked_up_beside_the_partners_placement() -> None:
    """The same operation beside attention on a whole second stream and beside attention capped
    at 64 SMs: each layout is charged its own measurement; entries without a partner (older
    profiles) serve any layout."""
    from runtime.tune import Interference
    from runtime.tune.costs import BatchShape, Costs, Layout

    base = synthetic_profile(device_sms=32, grid=True)
    rows = (Interference("input_norm", "attention", "whole", 256, 20.0, "whole"),
            Interference("input_norm", "attention", "whole", 256, 2.0, "grid:16"),
            Interference("qkv_proj", "attention", "whole", 256, 3.0))  # fmt: skip
    prof = replace(base, interference=rows)
    assert prof.slowdown("input_norm", "attention", "whole", 256, "whole") == 20.0
    assert prof.slowdown("input_norm", "attention", "whole", 256, "grid:16") == 2.0
    assert prof.slowdown("qkv_proj", "attention", "whole", 256, "grid:16") == 3.0
    assert prof.slowdown("input_norm", "attention", "whole", 256, "grid:8") == 1.0
    costs = Costs(prof, BatchShape(256, 0, 1024))
    streams = Layout("streams", "whole", "whole", True)
    capped = Layout("grid:16", "grid:16", "whole", True)
    assert costs.us(streams, "pre", 0, 256) > costs.us(capped, "pre", 0, 256)
    with pytest.raises(ProfileError, match="bad placement"):
        replace(base, interference=(Interference("rope", "attention", "whole", 8, 1.0, "x"),))


def test_a_prefill_chunk_longer_than_the_context_is_priced_over_itself() -> None:
    from runtime.tune.costs import DENSE, BatchShape, Costs

    prof = synthetic_profile(device_sms=32)
    att = prof.attention
    long_chunk = Costs(prof, BatchShape(0, 2048, 512)).us(DENSE, "att", 0, 2048)
    assert long_chunk == pytest.approx(1e3 * prof.time_ms(att, "whole", 2048, "prefill", 2048))
    assert long_chunk > 1e3 * prof.time_ms(att, "whole", 2048, "prefill", 512)
    short = Costs(prof, BatchShape(0, 256, 1024)).us(DENSE, "att", 0, 256)
    assert short == pytest.approx(1e3 * prof.time_ms(att, "whole", 256, "prefill", 1024))


def test_operations_other_than_attention_are_timed_past_the_caches_size(tiny_llama: str) -> None:
    """A non-attention operation reads no KV: its rows are timed even when that many decodes at
    the smallest context would not fit the profiling cache (they share blocks), while attention
    over more KV than the cache holds is recorded as a failure. (On the H200 a grid to 8,704 rows
    stopped here: 2,048 rows at 1,024 tokens needed 131,072 blocks of a 122,069-block cache.)"""
    cfg = replace(QUICK, tokens=(4, 512), attention_tokens=(4, 512), kv_gb=0.0005)
    p = measure(tiny_llama, cfg, "test", dtype="float32", device="cpu")
    for op in LLAMA_OPS:
        if op != "attention":
            assert {t.tokens for t in p.timings if t.op == op} == {4, 512}, op
    assert any(f.startswith("attention decode 512 x") for f in p.notes["failures"])
    assert not any(f.startswith("attention decode 4 x") for f in p.notes["failures"])
