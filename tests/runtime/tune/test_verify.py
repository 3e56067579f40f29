"""runtime.tune.verify on the CPU: every bucket's representative batch through the dense forward
and its plan, with the predicted times beside the measured ones."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.pipeline.plans import two_stream_plan
from runtime.pipeline.planset import Bucket, PlanSet
from runtime.tune.verify import main


def test_verify_measures_every_bucket(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan = two_stream_plan("two", [8, 8], device_sms=16)
    buckets = (Bucket(8, 0, 32, None, 2.0, 2.0, "dense"),
               Bucket(8, 8, 32, "two.json", 1.5, 2.0, "a plan"))  # fmt: skip
    ps = PlanSet("tiny", "cpu", 16, (8,), (0, 8), (32,), buckets, 32, plans={"two.json": plan})
    path = ps.save(tmp_path / "set")
    out = tmp_path / "verify.json"
    argv = ["--plan-set", str(path), "--model", tiny_llama, "--load-format", "auto",
            "--device", "cpu", "--dtype", "float32", "--kv-gb", "0.01",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    rows = json.loads(out.read_text())["buckets"]
    assert [r.get("error") for r in rows] == [None, None]
    assert rows[0]["dense_measured_ms"] > 0 and "plan_measured_ms" not in rows[0]
    assert rows[1]["plan_measured_ms"] > 0
    assert rows[1]["plan_error"] == pytest.approx(rows[1]["plan_measured_ms"] / 1.5 - 1, abs=1e-3)


CANDIDATE_BUCKETS = (
    Bucket(8, 0, 32, None, 2.0, 2.0, "dense", "candidates/cand.json", 2.5),
    Bucket(8, 8, 32, None, 2.0, 2.0, "dense"),
)


def _dense_set_with_a_candidate(tmp_path: Path) -> Path:
    """A plan set dense in both buckets; the first has a two-stream candidate (predicted 2.5 ms)."""
    cand = two_stream_plan("cand", [8, 8], device_sms=16)
    ps = PlanSet("tiny", "cpu", 16, (8,), (0, 8), (32,), CANDIDATE_BUCKETS, 32,
                 candidates={"candidates/cand.json": cand})  # fmt: skip
    return ps.save(tmp_path / "set")


def test_verify_measures_candidates_and_an_fp8_pass(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Where dense won, the bucket's candidate pipeline is measured against its own prediction;
    --fp8-min-decodes repeats the large buckets over a float8 KV buffer."""
    path = _dense_set_with_a_candidate(tmp_path)
    assert (tmp_path / "set" / "candidates" / "cand.json").exists()
    assert PlanSet.load(path).buckets == CANDIDATE_BUCKETS
    out = tmp_path / "verify.json"
    argv = ["--plan-set", str(path), "--model", tiny_llama, "--load-format", "auto",
            "--device", "cpu", "--dtype", "float32", "--kv-gb", "0.01", "--buckets", "all",
            "--fp8-min-decodes", "8", "--contexts", "32", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    record = json.loads(out.read_text())
    rows = record["buckets"]
    assert [r.get("error") for r in rows] == [None, None]
    assert rows[0]["measured"] == "candidate"
    assert rows[0]["plan_error"] == pytest.approx(rows[0]["plan_measured_ms"] / 2.5 - 1, abs=1e-3)
    assert "plan_measured_ms" not in rows[1]
    fp8 = record["fp8_buckets"]
    assert len(fp8) == 2 and all(r.get("error") is None and r["dense_measured_ms"] > 0 for r in fp8)


def test_verify_candidates_only_over_a_buffer_too_small_for_the_batch(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--buckets candidates measures only buckets with a plan or a candidate; a batch the KV
    buffer cannot hold shares blocks between sequences and says how many times over."""
    path = _dense_set_with_a_candidate(tmp_path)
    out = tmp_path / "verify.json"
    # 9 blocks of 16 tokens (fp32, 2 KV heads of 16): 8 usable; 8 decodes at 32 need 16
    argv = ["--plan-set", str(path), "--model", tiny_llama, "--load-format", "auto",
            "--device", "cpu", "--dtype", "float32", "--kv-gb", "0.00004",
            "--buckets", "candidates", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    rows = json.loads(out.read_text())["buckets"]
    assert [(r["decodes"], r["prefill_tokens"]) for r in rows] == [(8, 0)]
    assert rows[0].get("error") is None and rows[0]["measured"] == "candidate"
    assert rows[0]["kv_reuse"] == 2.0 and rows[0]["plan_measured_ms"] > 0


def test_verify_only_the_prefill_tokens_asked_for(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--prefills 8: only the mixed bucket, in both passes."""
    path = _dense_set_with_a_candidate(tmp_path)
    out = tmp_path / "verify.json"
    argv = ["--plan-set", str(path), "--model", tiny_llama, "--load-format", "auto",
            "--device", "cpu", "--dtype", "float32", "--kv-gb", "0.01", "--prefills", "8",
            "--fp8-min-decodes", "0", "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    capsys.readouterr()
    record = json.loads(out.read_text())
    for rows in (record["buckets"], record["fp8_buckets"]):
        assert [(r["decodes"], r["prefill_tokens"]) for r in rows] == [(8, 8)]
        assert rows[0].get("error") is None and rows[0]["dense_measured_ms"] > 0
