"""``python -m runtime.bench --tp 2`` on the CPU: two gloo workers, records that say so."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from runtime.bench.__main__ import execute
from runtime.bench.options import build_parser

BASE = ["--load-format", "auto", "--device", "cpu", "--num-requests", "4", "--scale", "0.02"]


@pytest.mark.slow
def test_bench_records_carry_the_tensor_parallel_size(tiny_llama: str, tmp_path: Path) -> None:
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(
        ["--model", tiny_llama, *BASE, "--workloads", "512/512", "--tp", "1,2", "--out", str(out)]
    )
    assert execute(args, "test") == 0
    one, record = json.loads(out.read_text())  # --tp 1,2: both degrees in one run
    assert one["tensor_parallel_size"] == 1 and "network" not in one
    assert record["tensor_parallel_size"] == 2 and record["output_tokens"] == 4 * 10
    assert record["gemm_peak_tflops"] == one["gemm_peak_tflops"]  # ceilings measured once
    net = record["network"]
    assert net["allreduce_latency_us"] > 0 and net["allreduce_gb_per_s"] > 0
    assert net["collective_seconds_at_roofline"] > 0
    assert record["tight_roofline_tokens_per_s"] <= record["compute_roofline_tokens_per_s"]


def test_profiling_is_refused_under_tensor_parallelism(
    tiny_llama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["--model", tiny_llama, *BASE, "--workloads", "512/512", "--tp", "2", "--profile-run"]
    )
    assert execute(args, "test") == 2
    assert "--profile-run run in one process only" in capsys.readouterr().err
