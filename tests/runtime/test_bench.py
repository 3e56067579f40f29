"""The benchmark end to end on the CPU (tiny model, shrunken lengths): records are complete."""

from __future__ import annotations

import json
from pathlib import Path

from runtime.bench.__main__ import execute
from runtime.bench.options import build_parser
from runtime.bench.workloads import WORKLOADS, make_requests

REQUIRED = {
    "model", "device", "date", "command", "workload", "mode", "total_tokens_per_s",
    "output_tokens_per_s", "pct_compute_roofline", "pct_tight_roofline",
}  # fmt: skip


def test_workloads_have_their_means() -> None:
    for name, w in WORKLOADS.items():
        reqs = make_requests(w, 400, 1000, seed=1)
        mean_in = sum(len(r.prompt_token_ids) for r in reqs) / len(reqs)
        mean_out = sum(r.output_len for r in reqs) / len(reqs)
        assert abs(mean_in - w.mean_input) < 0.1 * w.mean_input, name
        assert abs(mean_out - w.mean_output) < 0.1 * w.mean_output, name


def test_bench_writes_one_record_per_workload(tiny_llama: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "512/512,lmsys", "--num-requests", "4", "--scale", "0.02",
        "--async-scheduling", "--profile-every", "4", "--out", str(out),
    ])  # fmt: skip
    assert execute(args, "test") == 0
    records = json.loads(out.read_text())
    assert [r["workload"] for r in records] == ["512/512", "lmsys"]
    for r in records:
        assert set(r) >= REQUIRED
        assert r["output_tokens"] > 0 and r["total_tokens_per_s"] > 0
        assert r["tight_roofline_tokens_per_s"] > 0
        pct = 100 * r["total_tokens_per_s"] / r["tight_roofline_tokens_per_s"]
        assert abs(r["pct_tight_roofline"] - pct) < 0.1
        assert r["tight_roofline_tokens_per_s"] <= r["compute_roofline_tokens_per_s"] + 1e-6
    fixed = records[0]
    assert fixed["prompt_tokens"] == 4 * 10 and fixed["output_tokens"] == 4 * 10
