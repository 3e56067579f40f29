"""``python -m runtime.bench --mode sequential,nanoflow,sequential`` on the CPU: one record per
engine and workload (a mode listed twice runs twice, in order), with the same tokens counted in
both modes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.bench.__main__ import execute, pipeline_spec
from runtime.bench.options import build_parser


def test_both_modes_in_one_run(tiny_llama: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "512/512,lmsys", "--num-requests", "4", "--scale", "0.02",
        "--mode", "sequential,nanoflow,sequential", "--profile-every", "4", "--out", str(out),
    ])  # fmt: skip
    assert execute(args, "test") == 0
    records = json.loads(out.read_text())
    assert [(r["mode"], r["workload"]) for r in records] == [
        ("sequential", "512/512"), ("sequential", "lmsys"),
        ("nanoflow", "512/512"), ("nanoflow", "lmsys"),
        ("sequential", "512/512"), ("sequential", "lmsys"),
    ]  # fmt: skip
    assert [r["engine_index"] for r in records] == [0, 0, 1, 1, 2, 2]
    assert [r["pipeline"] for r in records] == [None, None, "default", "default", None, None]
    # no plan set for the CPU: the hand-picked plans by workload class
    assert records[2]["pipeline_used"].startswith("decode: ")
    assert records[0]["pipeline_used"] is None
    # hand-picked plans are not guarded (the plan guard checks a plan set's): no plan_guard
    # record, where before an empty one said "guard on, no bucket met"
    assert not any("plan_guard" in r for r in records)
    seq, nano = records[:2], records[2:4]
    for a, b in zip(seq, nano, strict=True):
        assert (a["prompt_tokens"], a["output_tokens"]) == (b["prompt_tokens"], b["output_tokens"])
        assert b["total_tokens_per_s"] > 0


def test_unknown_mode_is_refused() -> None:
    assert pipeline_spec("nanoflow-sequential", "p.json") == "p.json:sequential"
    with pytest.raises(SystemExit, match="unknown mode 'overlap'"):
        pipeline_spec("overlap", "default")
