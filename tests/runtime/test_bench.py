"""The benchmark end to end on the CPU (tiny model, shrunken lengths): records are complete."""

from __future__ import annotations

import json
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from kernels.decode_choice import DecodeChoice
from runtime.bench.__main__ import (
    attention_backends,
    decode_choices,
    execute,
    linear_backends,
    parse_workloads,
    replays_delta,
    rope_kv_stores,
    token_budgets,
)
from runtime.bench.options import build_parser
from runtime.bench.table import _engine
from runtime.bench.workloads import WORKLOADS, make_requests, workload_seed
from runtime.config import EngineConfig

REQUIRED = {
    "engine", "version", "model", "device", "date", "command", "workload", "mode",
    "num_requests", "total_tokens_per_s", "output_tokens_per_s", "pct_compute_roofline",
    "pct_tight_roofline", "workload_roofline_tokens_per_s", "pct_workload_roofline",
    "kv_cache_tokens", "max_batch_seqs", "tensor_parallel_size",
}  # fmt: skip


def test_workloads_have_their_means() -> None:
    for name, w in WORKLOADS.items():
        reqs = make_requests(w, 400, 1000, seed=1)
        mean_in = sum(len(r.prompt_token_ids) for r in reqs) / len(reqs)
        mean_out = sum(r.output_len for r in reqs) / len(reqs)
        assert abs(mean_in - w.mean_input) < 0.1 * w.mean_input, name
        assert abs(mean_out - w.mean_output) < 0.1 * w.mean_output, name


def test_bench_writes_one_record_per_workload(tiny_llama: str, tmp_path: Path) -> None:
    records = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512,lmsys", "--num-requests", "4", "--scale", "0.02",
        "--async-scheduling", "--profile-every", "4",
    ])  # fmt: skip
    assert [r["workload"] for r in records] == ["512/512", "lmsys"]
    for r in records:
        assert set(r) >= REQUIRED
        assert r["output_tokens"] > 0 and r["total_tokens_per_s"] > 0
        assert r["tight_roofline_tokens_per_s"] > 0
        pct = 100 * r["total_tokens_per_s"] / r["tight_roofline_tokens_per_s"]
        assert abs(r["pct_tight_roofline"] - pct) < 0.1
        # per iteration the tight bound takes the larger of compute and memory time, so it is
        # never above the memory roofline; NanoFlow's compute roofline counts 2 x all
        # parameters per token and can sit below it (test_bench_roofline shows when)
        assert r["tight_roofline_tokens_per_s"] <= r["memory_roofline_tokens_per_s"] + 1e-6
        # the serial bound adds what the tight one overlaps: never above it
        assert 0 < r["serial_roofline_tokens_per_s"] <= r["tight_roofline_tokens_per_s"] + 1e-6
        assert r["pct_serial_roofline"] >= r["pct_tight_roofline"]
        assert r["engine"] == "nanolang" and r["num_requests"] == 4
        assert r["tensor_parallel_size"] == 1 and "network" not in r
        assert 1 <= r["max_batch_seqs"] <= 4
        assert r["mean_iteration_split_ms"] is not None  # --profile-every was given
        assert r["decode_graph_replays"] == {}  # the CPU captures no decode graphs
    fixed = records[0]
    assert fixed["prompt_tokens"] == 4 * 10 and fixed["output_tokens"] == 4 * 10


def test_graph_replays_per_plan_are_counted_between_snapshots() -> None:
    before = {"dense": 5, "d1024-plan.json": 2}
    after = {"dense": 9, "d1024-plan.json": 2, "d512-plan.json": 3}
    assert replays_delta(before, after) == {"dense": 4, "d512-plan.json": 3}
    assert replays_delta({}, {}) == {}
    assert replays_delta(None, after) is None  # tensor parallelism: not counted


def test_throughput_runs_are_unprofiled_and_a_profiled_run_explains_them(
    tiny_llama: str, tmp_path: Path
) -> None:
    (record,) = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "1000/1000", "--num-requests", "3", "--scale", "0.01",
        "--profile-run", "--profile-skip", "2", "--profile-window", "3", "--profile-top", "2",
    ])  # fmt: skip
    assert record["profiled_iterations"] == 0 and record["mean_iteration_split_ms"] is None
    prof = record["profile"]
    assert prof["iterations"] == 3 and prof["skip_iterations"] == 2
    assert prof["device_ms_per_iteration"]["gemm"] > 0  # aten::mm / addmm of the projections
    assert prof["wall_ms_per_iteration"] >= prof["device_busy_ms_per_iteration"] > 0
    assert record["output_tokens"] == 3 * 10  # the profiled run did not disturb the measured one
    assert len(prof["top_kernels_ms_per_iteration"]) == 2  # --profile-top


def test_profile_top_must_be_positive() -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--profile-top", "0"])


def test_workload_seeds_do_not_depend_on_the_selection() -> None:
    assert workload_seed("512/512") == 1 and workload_seed("1000/1000") == len(WORKLOADS)
    assert list(WORKLOADS)[-1] == "1000/1000" and WORKLOADS["1000/1000"].fixed


def test_both_kv_cache_dtypes_in_one_run(tiny_llama: str, tmp_path: Path) -> None:
    auto, fp8 = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--kv-cache-dtype", "auto,fp8",
    ])  # fmt: skip
    assert (auto["kv_cache_dtype"], fp8["kv_cache_dtype"]) == ("auto", "fp8")
    assert auto["output_tokens"] == fp8["output_tokens"] == 2 * 10
    # a float8 cache moves a quarter of float32's KV bytes: the workload bound can only rise
    assert fp8["workload_roofline_tokens_per_s"] >= auto["workload_roofline_tokens_per_s"]


def test_token_budgets_sweep_one_engine_each(tiny_llama: str, tmp_path: Path) -> None:
    small, large = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "1024/512", "--num-requests", "3", "--scale", "0.02",
        "--token-budgets", "8,64",
    ])  # fmt: skip
    assert (small["max_num_batched_tokens"], large["max_num_batched_tokens"]) == (8, 64)
    assert small["output_tokens"] == large["output_tokens"] == 3 * 10
    # 3 prompts of 20 tokens: chunks of at most 8 tokens take several mixed iterations, 64 one
    assert small["mixed_iterations"] > large["mixed_iterations"] >= 1
    assert small["iterations"] > large["iterations"]
    for r in (small, large):
        by_kind = r["iteration_ms_by_kind"]
        assert by_kind["mixed"] > 0 and by_kind["decode"] > 0
        # every decode step in one batch-size range: 3 sequences at most here
        assert set(r["decode_steps_by_batch"]) == {"1-16"}
        steps = r["decode_steps_by_batch"]["1-16"]
        assert steps["steps"] == r["iterations"] - r["mixed_iterations"]
        assert steps["mean_ms"] == pytest.approx(by_kind["decode"], abs=2e-3)
        assert r["workload_roofline"]["weights_read_ms"] > 0
        assert r["decode_device_by_batch"] == {}  # no CUDA events, no graphs on the CPU


def test_decode_steps_are_grouped_by_batch_size() -> None:
    from runtime.bench.report import decode_steps_by_batch

    steps = [(1, 0.002), (16, 0.004), (17, 0.010), (64, 0.020), (2000, 0.1)]
    assert decode_steps_by_batch(steps) == {
        "1-16": {"steps": 2, "mean_ms": 3.0, "seconds": 0.006},
        "17-32": {"steps": 1, "mean_ms": 10.0, "seconds": 0.01},
        "33-64": {"steps": 1, "mean_ms": 20.0, "seconds": 0.02},
        "1025+": {"steps": 1, "mean_ms": 100.0, "seconds": 0.1},
    }
    assert decode_steps_by_batch([]) == {}


def test_decode_device_time_is_split_at_the_graph_replay() -> None:
    """Per batch-size range, over the steps that replayed a graph only: the device's span of
    the iteration, the replay's, and the rest (copies, sampling, waits for the host)."""
    from runtime.bench.report import decode_device_by_batch
    from runtime.bench.roofline import IterationRecord

    def step(seqs: int, wall: float, device: float, graph: float) -> IterationRecord:
        # launched: a prefill chunk of 500 tokens; read back: the replayed decode of ``seqs``
        return IterationRecord(500, 3, 100, 100, wall, device, graph, seqs if graph else 0)

    steps = [step(8, 0.0050, 0.0049, 0.0047), step(12, 0.0054, 0.0051, 0.0047),
             step(200, 0.0100, 0.0099, 0.0090), step(300, 0.0200, 0.0150, 0.0)]  # fmt: skip
    assert decode_device_by_batch(steps) == {
        "1-16": {"steps": 2, "step_ms": 5.2, "device_ms": 5.0, "graph_ms": 4.7,
                 "outside_graph_ms": 0.3},
        "129-256": {"steps": 1, "step_ms": 10.0, "device_ms": 9.9, "graph_ms": 9.0,
                    "outside_graph_ms": 0.9},
    }  # fmt: skip
    assert decode_device_by_batch([step(300, 0.02, 0.015, 0.0)]) == {}  # eager: not counted
    # bucketed by the read-back iteration's sequences, not the launched batch's


def test_token_budgets_must_be_positive_integers() -> None:
    for bad in ("8,x", "0"):
        with pytest.raises(SystemExit, match="--token-budgets"):
            token_budgets(build_parser().parse_args(["--token-budgets", bad]))
    assert token_budgets(build_parser().parse_args([])) == [8192]


def test_decode_attention_choices_run_one_engine_each(tiny_llama: str, tmp_path: Path) -> None:
    """The old fp8 decode (gather kernel, widened to bf16) and today's default in one process,
    each record saying which it ran (on the CPU both run the torch reference)."""
    old, new = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--kv-cache-dtype", "fp8", "--decode-attention", "gather:q,auto:fp16",
    ])  # fmt: skip
    assert (old["decode_attention"], new["decode_attention"]) == ("gather:q", "auto:fp16")
    assert (old["engine_index"], new["engine_index"]) == (0, 1)
    assert old["output_tokens"] == new["output_tokens"] == 2 * 10


def test_decode_attention_choices_are_parsed_and_refused_by_name() -> None:
    assert decode_choices("auto:fp16") == [DecodeChoice()]
    # no choice named: the engine's default, which --decode-attention's default spells out
    assert decode_choices("") == [EngineConfig().decode_choice()]
    assert decode_choices(build_parser().parse_args([]).decode_attention) == [
        DecodeChoice("by-context", "fp16", Fraction(21, 20))
    ]
    assert decode_choices("gather:q, tma-items") == [DecodeChoice("gather", "q"),
                                                     DecodeChoice("tma-items", "fp16")]  # fmt: skip
    for bad in ("cudnn:fp16", "gather:bf16"):
        with pytest.raises(SystemExit, match="--decode-attention"):
            decode_choices(bad)


def test_by_context_decode_attention_is_listed_and_runs(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--decode-attention by-context``: named in the help, parsed, and an engine runs with it
    (on the CPU the torch reference, which has no choice to make)."""
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    assert "by-context" in " ".join(capsys.readouterr().out.split())
    assert decode_choices("auto,by-context") == [DecodeChoice(), DecodeChoice("by-context")]
    (record,) = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--decode-attention", "by-context",
    ])  # fmt: skip
    assert record["decode_attention"] == "by-context@1.05:fp16"  # the ratio named: the default
    assert record["output_tokens"] == 2 * 10


def test_decode_attention_sweeps_the_by_context_ratio_one_engine_each(
    tiny_llama: str, tmp_path: Path
) -> None:
    """``--decode-attention auto,by-context@1.05``: each engine built with its own choice (the
    record's spec is the engine config's), the ratio exact; a bad ratio fails before any run."""
    assert decode_choices("by-context@1.02, by-context@1.1:q") == [
        DecodeChoice("by-context", "fp16", Fraction(51, 50)),
        DecodeChoice("by-context", "q", Fraction(11, 10)),
    ]
    auto, by = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--decode-attention", "auto,by-context@1.05",
    ])  # fmt: skip
    assert auto["decode_attention"] == "auto:fp16"
    assert by["decode_attention"] == "by-context@1.05:fp16"
    assert DecodeChoice.parse(by["decode_attention"]).uniform_ratio == Fraction(21, 20)
    assert (auto["engine_index"], by["engine_index"]) == (0, 1)
    for bad in ("by-context@0.5", "gather@1.05", "by-context@1.o5"):
        with pytest.raises(SystemExit, match=f"--decode-attention: decode choice '{bad}'"):
            decode_choices(f"auto,{bad}")


def test_linear_backends_run_one_engine_each(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--linear default,torch``: two engines in one process, each record naming the linear
    backend it ran; an unavailable backend is a clear error naming the ones there are."""
    default, torch_ = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--linear", "default,torch",
    ])  # fmt: skip
    assert default["kernels"]["linear"] == torch_["kernels"]["linear"] == "torch"
    assert (default["engine_index"], torch_["engine_index"]) == (0, 1)
    assert default["output_tokens"] == torch_["output_tokens"]
    assert linear_backends("default, triton") == [None, "triton"]
    assert linear_backends("") == [None]
    capsys.readouterr()
    argv = ["--model", tiny_llama, "--load-format", "auto", "--device", "cpu", "--workloads",
            "512/512", "--num-requests", "1", "--scale", "0.02", "--linear", "triton"]  # fmt: skip
    assert execute(build_parser().parse_args(argv), "test") == 2
    assert ("kernel backend 'triton' for linear is not available on cpu (available: torch)"
            in capsys.readouterr().err)  # fmt: skip


def test_rope_kv_store_fused_and_unfused_run_one_engine_each(
    tiny_llama: str, tmp_path: Path
) -> None:
    """``--rope-kv-store fused,unfused``: two engines, each record's kernels saying which ran,
    the same tokens (on the CPU both are the torch reference); other names are refused."""
    fused, unfused = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--rope-kv-store", "fused,unfused",
    ])  # fmt: skip
    assert fused["kernels"]["rotary_store_kv"] == "torch"
    assert unfused["kernels"]["rotary_store_kv"] == "unfused"
    assert fused["output_tokens"] == unfused["output_tokens"]
    assert rope_kv_stores("unfused, fused") == [False, True] and rope_kv_stores("") == [True]
    with pytest.raises(SystemExit, match="--rope-kv-store"):
        rope_kv_stores("fused,off")


def test_workloads_take_their_own_request_counts() -> None:
    assert parse_workloads("1024/512:256,sharegpt", 1000) == [("1024/512", 256), ("sharegpt", 1000)]
    assert [n for n, _ in parse_workloads("all", 5)] == list(WORKLOADS)
    for bad in ("1024/512:0", "1024/512:x", "sharegpt:", "nope:3"):
        with pytest.raises(SystemExit, match="workload"):
            parse_workloads(bad, 10)


def _run_on_cpu(tiny_llama: str, tmp_path: Path, args: list[str]) -> list[dict[str, Any]]:
    """``python -m runtime.bench`` on the tiny model on the CPU: its records from ``--out``."""
    out = tmp_path / "bench.json"
    common = ["--model", tiny_llama, "--load-format", "auto", "--device", "cpu", "--out", str(out)]
    assert execute(build_parser().parse_args([*common, *args]), "test") == 0
    records: list[dict[str, Any]] = json.loads(out.read_text())
    return records


def test_warm_up_requests_are_untimed_and_leave_the_timed_run_alone(
    tiny_llama: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--warmup-requests``: the engine serves them before the timed workload; the records are
    those of the timed requests alone and say how many warm-up requests ran."""
    out = tmp_path / "bench.json"
    base = ["--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
            "--workloads", "512/512:3,lmsys:2", "--scale", "0.02", "--out", str(out)]  # fmt: skip
    assert execute(build_parser().parse_args([*base, "--warmup-requests", "2"]), "t") == 0
    warm = json.loads(out.read_text())[0]
    err = capsys.readouterr().err  # a warm-up of each workload's prompt lengths
    assert "[bench] warm-up: 2 requests of 512/512" in err
    assert "[bench] warm-up: 2 requests of lmsys" in err
    # the summary table in a log (not a terminal) keeps its cells whole: rich takes 80 columns
    # there unless told otherwise, and cut "nanolang" to "nano…"
    assert "│ nanolang │ 512/512  │ 3" in err and "…" not in err
    assert execute(build_parser().parse_args(base), "t") == 0
    cold = json.loads(out.read_text())[0]
    assert (warm["warmup_requests"], cold["warmup_requests"]) == (2, 0)
    for key in ("num_requests", "prompt_tokens", "output_tokens", "iterations"):
        assert warm[key] == cold[key], key


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--warmup-requests", "-1", "must be 0 or more"),
        ("--peer-timeout", "0", "must be more than 0 seconds"),
        ("--peer-timeout", "-5", "must be more than 0 seconds"),
    ],
)
def test_bad_counts_and_time_limits_are_refused_by_name(
    option: str, value: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_info:
        build_parser().parse_args([option, value])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert option in err and message in err


@pytest.mark.parametrize(("flag", "value", "why"), [
    ("--plan-guard-samples", "0", "samples must be >= 1"),
    ("--plan-guard-min-gain", "1.5", r"min_gain must be in \[0, 1\)"),
    ("--plan-guard-recheck-every", "-1", "recheck_every must be >= 0"),
])  # fmt: skip
def test_bad_plan_guard_settings_fail_before_any_engine(
    tmp_path: Path, flag: str, value: str, why: str
) -> None:
    """A bad guard setting stops the run with the other options' checks, naming the flags,
    before any peer (``--peers-first``) or engine runs (the model does not even exist); before,
    the first engine's config refused it, after ``--peers-first``'s peers had run."""
    from runtime.bench.__main__ import run

    args = build_parser().parse_args([
        "--model", str(tmp_path / "no-model"), "--device", "cpu", "--mode", "sequential,nanoflow",
        flag, value,
    ])  # fmt: skip
    names = "--plan-guard-samples / --plan-guard-min-gain / --plan-guard-recheck-every"
    with pytest.raises(SystemExit, match=f"{names}: .*{why}"):
        run(args, "test")


def test_attention_backends_run_one_engine_each_and_unknown_names_stop_the_run(
    tiny_llama: str, tmp_path: Path
) -> None:
    """``--attention-backend default,torch``: one engine each, each record saying what was asked
    (None: the registry's choice) and what ran; the comparison table names the asked one. An
    unknown name stops the run before any engine is built."""
    default, torch_ = _run_on_cpu(tiny_llama, tmp_path, [
        "--workloads", "512/512", "--num-requests", "2", "--scale", "0.02",
        "--attention-backend", "default,torch",
    ])  # fmt: skip
    assert (default["attention_backend"], torch_["attention_backend"]) == (None, "torch")
    assert default["kernels"]["paged_attention"] == torch_["kernels"]["paged_attention"] == "torch"
    assert (default["engine_index"], torch_["engine_index"]) == (0, 1)
    assert _engine(default) == "nanolang" and _engine(torch_) == "nanolang (torch attention)"
    assert attention_backends("triton, flashinfer") == ["triton", "flashinfer"]
    assert attention_backends("") == [None]
    out = tmp_path / "none.json"
    with pytest.raises(SystemExit, match="--attention-backend: unknown backend 'cudnn'"):
        execute(build_parser().parse_args([
            "--model", tiny_llama, "--device", "cpu", "--out", str(out),
            "--attention-backend", "torch,cudnn"]), "test")  # fmt: skip
    assert not out.exists()
