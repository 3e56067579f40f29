"""A plan set over fp8 KV from the H200 verify record: the one candidate measured faster than
dense over fp8 becomes its bucket's plan, everything else stays dense; decode batches of 1,024
sequences run it only in the 2,048-context bucket."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.pipeline.plan import PlanError
from runtime.pipeline.plans import SEARCHED_DIR, load_pipeline
from runtime.pipeline.planset import PlanSet
from runtime.tune.promote import main, promote

ROOT = Path(__file__).resolve().parents[3]
VERIFY = ROOT / "bench/results/2026-11-29-h200-llama-3-8b-nanoflow-candidates-verify.json"
BF16_SET = SEARCHED_DIR / "llama-3-8b-h200" / "planset.json"
CANDIDATE = "d1024-p0-c2048-512-512-grid80.json"


def test_the_fp8_winning_candidate_is_promoted(tmp_path: Path) -> None:
    out = tmp_path / "fp8"
    assert main(["--plan-set", str(BF16_SET), "--verify", str(VERIFY), "--out", str(out)]) == 0
    fp8 = PlanSet.load(out / "planset.json")
    assert fp8.kv_cache_dtype == "float8_e4m3fn" and set(fp8.plans) == {CANDIDATE}
    planned = [b for b in fp8.buckets if b.plan is not None]
    # 1.038x at 1,024 + 0, context 2,048; the 1.015x one (4,096) is under the 2% default gain
    assert [(b.decodes, b.prefill_tokens, b.context) for b in planned] == [(1024, 0, 2048)]
    assert planned[0].dense_ms / planned[0].predicted_ms == pytest.approx(1.038, abs=1e-3)
    # the plan a decode-only batch of 1,024 runs per context bucket (what its graphs are keyed by)
    assert [fp8.lookup(1024, 0, c).plan for c in (512, 1024, 2048, 4096)] == [
        None, None, CANDIDATE, None]  # fmt: skip
    assert fp8.lookup(512, 0, 2048).plan is None


def test_over_bf16_nothing_is_promoted_and_bad_records_are_refused(tmp_path: Path) -> None:
    bf16 = PlanSet.load(BF16_SET)
    record = json.loads(VERIFY.read_text())
    assert promote(bf16, BF16_SET.parent, record["buckets"], "bfloat16", 0.0).plans == {}
    assert main(["--plan-set", str(BF16_SET), "--verify", str(VERIFY), "--kv-cache-dtype",
                 "auto", "--out", str(tmp_path / "bf16")]) == 0  # fmt: skip
    assert PlanSet.load(tmp_path / "bf16" / "planset.json").plans == {}
    no_fp8 = {k: v for k, v in record.items() if k != "fp8_buckets"}
    from runtime.tune.promote import verified_records

    with pytest.raises(PlanError, match="no buckets measured over float8_e4m3fn"):
        verified_records(no_fp8, "float8_e4m3fn", bf16)


EXPLORE_SET = SEARCHED_DIR / "llama-3-8b-h200" / "explore" / "planset.json"
EXPLORE_VERIFY = ROOT / "bench/results/2026-11-30-h200-llama-3-8b-nanoflow-explore-verify.json"
EXPLORE_PLANS = {"d512-p0-c2048-256-256-grid64.json", "d1024-p0-c1536-512-512-grid64.json",
                 CANDIDATE}  # fmt: skip


def test_the_explore_near_misses_measured_with_the_older_fp8_kernels_are_promoted(
    tmp_path: Path,
) -> None:
    """The explore search's near misses (``nanolang tune --explore 0.15``) as measured over fp8
    with the decode kernels before 2026-11-30's float16 dots: three of them beat dense."""
    out = tmp_path / "fp8"
    assert main(["--plan-set", str(EXPLORE_SET), "--verify", str(EXPLORE_VERIFY),
                 "--out", str(out)]) == 0  # fmt: skip
    old = PlanSet.load(out / "planset.json")
    assert set(old.plans) == EXPLORE_PLANS
    # a decode-only batch of 1,024 pipelined from a mean context of 1,280 (the 1,536 bucket)
    assert [old.lookup(1024, 0, c).plan for c in (1024, 1279, 1280, 1536, 2048, 4096)] == [
        None, None, "d1024-p0-c1536-512-512-grid64.json", "d1024-p0-c1536-512-512-grid64.json",
        CANDIDATE, None]  # fmt: skip
    assert old.lookup(1024, 512, 1536).plan is None  # mixed batches stay dense


FP8_VERIFY = ROOT / "bench/results/2026-11-30-h200-llama-3-8b-nanoflow-fp8-verify.json"


def test_the_shipped_fp8_set_is_dense_after_the_fp8_re_profile(tmp_path: Path) -> None:
    """--mode nanoflow with kv_cache_dtype='fp8' on the H200 runs the dense forward everywhere:
    re-profiled with today's fp8 decode kernels, the search answered dense in all 60 fp8 buckets
    and the one candidate verify measured ran at 0.944x dense, so the set promoted from that
    record (the shipped one) keeps no plan."""
    from runtime.model.loader import resolve_model
    from runtime.pipeline.planset import signature_of

    record = json.loads(FP8_VERIFY.read_text())
    assert [b["plan_vs_dense"] < 1.0 for b in record["buckets"]] == [True]
    _, cfg = resolve_model("llama-3-8b", None)
    found = load_pipeline("default", signature_of(cfg, 2), "NVIDIA H200", "float8_e4m3fn")
    assert isinstance(found, PlanSet) and found.plans == {}
    out = tmp_path / "fp8"
    assert main(["--plan-set", str(EXPLORE_SET), "--verify", str(FP8_VERIFY),
                 "--out", str(out)]) == 0  # fmt: skip
    assert PlanSet.load(out / "planset.json").buckets == found.buckets
    assert all(found.lookup(1024, 0, c).plan is None for c in (1024, 1280, 1536, 2048, 4096))
    assert FP8_VERIFY.name in found.lookup(1024, 0, 2048).reason
