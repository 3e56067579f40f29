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
    assert record["allreduce"] == "nccl" and "allreduce" not in one  # the group's own path
    assert record["gemm_peak_tflops"] == one["gemm_peak_tflops"]  # ceilings measured once
    net = record["network"]
    assert net["allreduce_latency_us"] > 0 and net["allreduce_gb_per_s"] > 0
    assert net["collective_seconds_at_roofline"] > 0
    assert record["tight_roofline_tokens_per_s"] <= record["memory_roofline_tokens_per_s"] + 1e-6


def test_eager_profiling_is_refused_under_tensor_parallelism(
    tiny_llama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    args = build_parser().parse_args(
        ["--model", tiny_llama, *BASE, "--workloads", "512/512", "--tp", "2",
         "--profile-every", "4"]
    )
    assert execute(args, "test") == 2
    assert "--profile-every runs in one process only" in capsys.readouterr().err


def test_the_profiled_run_profiles_rank_zero(tiny_llama: str, tmp_path: Path) -> None:
    """--profile-run at TP=2: rank 0's worker runs the profiler over the window the driver
    asks for and sends its summary back (on the CPU: aten operators for kernels), between the
    iterations' own results."""
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(["--model", tiny_llama, *BASE, "--workloads", "512/512",
                                      "--tp", "2", "--profile-run", "--profile-skip", "2",
                                      "--profile-window", "3", "--out", str(out)])  # fmt: skip
    assert execute(args, "test") == 0
    (record,) = json.loads(out.read_text())
    profile = record["profile"]
    assert profile["iterations"] == 3 and profile["profiled_rank"] == 0
    assert profile["source"] == "torch.profiler CPU ops"
    assert profile["device_busy_ms_per_iteration"] > 0
    assert any(name.startswith("aten::") for name in profile["top_kernels_ms_per_iteration"])
    assert record["output_tokens"] == 4 * 10  # the throughput run, untouched


@pytest.mark.slow
def test_nanoflow_at_two_ranks_records_the_network_search(tiny_llama: str, tmp_path: Path) -> None:
    """Both modes at TP=2 in one run; the nanoflow record says what the ranks searched (on the
    CPU: dense in every bucket, nothing overlaps) and produces the same tokens."""
    out = tmp_path / "bench.json"
    args = build_parser().parse_args(["--model", tiny_llama, *BASE, "--workloads", "512/512",
                                      "--tp", "2", "--mode", "sequential,nanoflow",
                                      "--out", str(out)])  # fmt: skip
    assert execute(args, "test") == 0
    seq, nano = json.loads(out.read_text())
    assert (seq["mode"], nano["mode"]) == ("sequential", "nanoflow")
    assert seq["tensor_parallel_size"] == nano["tensor_parallel_size"] == 2
    assert "pipeline_plans" not in seq and nano["pipeline"] == "default"
    assert "0 plans" in nano["pipeline_plans"]
    search = nano["network_search"]
    assert search["allreduce_us"]["all"] and search["buckets"]
    assert all(b[3] is None and b[4] == b[5] for b in search["buckets"])  # dense: as predicted
    assert nano["output_tokens"] == seq["output_tokens"]
    # dense in every bucket: the ranks run the model's own forward, which no guard checks (the
    # ranks say so), so neither record has a plan_guard
    assert "plan_guard" not in seq and "plan_guard" not in nano


def test_a_symmetric_memory_all_reduce_is_named_in_the_tables() -> None:
    from runtime.bench.table import comparison_table, throughput_table

    base = {"engine": "nanolang", "workload": "1024/512", "mode": "sequential",
            "tensor_parallel_size": 2, "total_tokens_per_s": 1.0, "output_tokens_per_s": 1.0,
            "mean_iteration_ms": 1.0, "pct_compute_roofline": 1, "pct_tight_roofline": 1,
            "num_requests": 4}  # fmt: skip
    symm = {**base, "allreduce": "symm_mem two-shot up to 8388608 bytes, nccl above"}
    assert "TP=2, symm_mem all-reduce" in throughput_table([symm])
    assert "symm_mem" not in throughput_table([{**base, "allreduce": "nccl"}])
    peer = {**base, "engine": "vllm 0.26.0", "allreduce": None}
    assert "| nanolang TP=2, symm_mem all-reduce | vllm 0.26.0 TP=2 |" in comparison_table(
        [symm, peer]
    )
