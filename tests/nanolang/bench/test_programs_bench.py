"""``nanolang bench --programs`` at a tiny scale on the CPU: every program, mode and memory
setting runs on a real engine and yields a complete record."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from nanolang.bench import BenchConfig, run_programs
from nanolang.bench.programs import PROGRAMS
from nanolang.bench.runner import model_source
from nanolang.cli import main
from runtime.tiny import default_model_dir

FIELDS = {
    "program", "mode", "memory_pressure", "instances_per_s", "device", "date", "tokens_per_s",
    "prefill_tokens_computed", "cache_hit_rate", "peak_kv_use", "latency_p50_s",
    "latency_p99_s", "instances",
}  # fmt: skip


@pytest.fixture(scope="module")
def records() -> list[dict]:
    cfg = BenchConfig(
        instances=4, naive_instances=1, scale=0.05, pressure=(True,), max_num_seqs=16,
        model=str(default_model_dir()), device="cpu",
    )  # fmt: skip
    return run_programs(cfg)


def test_every_program_and_mode_yields_a_record(records: list[dict]) -> None:
    assert {(r["program"], r["mode"]) for r in records} == {
        (p, m) for p in PROGRAMS for m in ("naive", "independent", "graph")
    }
    for r in records:
        assert r.keys() >= FIELDS
        assert r["errors"] == [] and r["instances_ok"] == r["instances"]
        assert r["instances_per_s"] > 0 and r["device"] == "cpu"


def test_modes_differ_as_specified(records: list[dict]) -> None:
    for r in records:
        if r["mode"] == "naive":
            assert r["instances"] == 1 and not r["prefix_caching"] and r["cache_hit_rate"] == 0
        else:
            assert r["instances"] == 4 and r["prefix_caching"]
        assert (r["runtime_policies"] is not None) == (r["mode"] == "graph")


def test_memory_pressure_shrinks_the_cache_below_the_demand(records: list[dict]) -> None:
    for r in records:
        assert r["memory_pressure"]
        assert r["kv_capacity_tokens"] < r["instances_peak_demand_tokens"]


def test_generation_lengths_are_the_same_in_every_mode(records: list[dict]) -> None:
    for program in PROGRAMS:
        rows = {r["mode"]: r for r in records if r["program"] == program}
        per_instance = {m: r["generated_tokens"] / r["instances"] for m, r in rows.items()}
        assert len(set(per_instance.values())) == 1, per_instance


def test_preset_architecture_with_the_demo_tokenizer(tmp_path: Path) -> None:
    overrides = {"num_hidden_layers": 1, "hidden_size": 64, "intermediate_size": 128,
                 "num_attention_heads": 4, "num_key_value_heads": 2}  # fmt: skip
    model_dir, load_format = model_source("llama-3-8b", tmp_path, overrides)
    config = json.loads((Path(model_dir) / "config.json").read_text())
    assert load_format == "dummy" and config["rope_theta"] == 500000.0
    assert config["vocab_size"] < 128256 and config["num_hidden_layers"] == 1
    out = tmp_path / "bench.json"
    argv = ["bench", "--programs", "judge", "--model", "llama-3-8b", "--device", "cpu",
            "--hf-overrides", json.dumps(overrides), "--instances", "2", "--scale", "0.05",
            "--memory-pressure", "off", "--modes", "independent,graph",
            "--out", str(out)]  # fmt: skip
    assert main(argv) == 0
    written = json.loads(out.read_text())
    assert [r["mode"] for r in written] == ["independent", "graph"]
    assert all(r["instances_ok"] == 2 for r in written)


def test_bad_program_names_are_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["bench", "--programs", "nope", "--model", "demo"]) == 2
    assert "unknown programs" in capsys.readouterr().err


def test_gen_scale_shrinks_generations_and_keeps_prompts() -> None:
    from runtime.tokenizer import load_tokenizer

    tok = load_tokenizer(default_model_dir())
    program = PROGRAMS["self_consistency"]
    full, short = program.args(3, 0.2, tok), program.args(3, 0.2, tok, gen_scale=0.05)
    assert short["question"] == full["question"]
    assert (full["cot"], short["cot"]) == (51, 13)


def test_lockstep_schedules_are_deterministic_and_batch_totals_recorded() -> None:
    cfg = BenchConfig(
        programs=("react",), modes=("independent", "graph"), instances=4, scale=0.05,
        pressure=(True,), max_num_seqs=16, model=str(default_model_dir()), device="cpu",
        lockstep=True,
    )  # fmt: skip
    first, second = run_programs(cfg), run_programs(cfg)
    keys = ("engine_iterations", "prefill_tokens_computed", "batched_tokens", "kv_tokens_read",
            "preemptions", "modeled_h200_8b_seconds")  # fmt: skip
    for a, b in zip(first, second, strict=True):
        assert [a[k] for k in keys] == [b[k] for k in keys]
        assert a["batched_tokens"] >= a["prefill_tokens_computed"] > 0
        assert a["modeled_h200_8b_seconds"] > 0 and a["lockstep"]


def test_records_are_handed_out_after_each_mode() -> None:
    cfg = BenchConfig(
        programs=("judge",), modes=("naive", "graph"), instances=2, naive_instances=1,
        scale=0.05, pressure=(False,), max_num_seqs=8, model=str(default_model_dir()),
        device="cpu",
    )  # fmt: skip
    seen: list[list[str]] = []
    records = run_programs(cfg, lambda rs: seen.append([r["mode"] for r in rs]))
    assert seen == [["naive"], ["naive", "graph"]]
    assert records[0]["sample_of_instances"] == 2 and records[1]["sample_of_instances"] is None


def test_the_collector_is_paused_only_inside_and_recorded(records: list[dict]) -> None:
    import gc

    from nanolang.bench.modes import collector_paused

    assert gc.isenabled()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with collector_paused(False):
        assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("a failed run")
    assert gc.isenabled()
    assert all(r["gc_paused"] and r["warmup_instances"] == 8 for r in records)


def test_a_negative_warm_up_is_refused() -> None:
    with pytest.raises(ValueError, match="warmup_instances"):
        BenchConfig(warmup_instances=-1)


def test_the_warm_up_runs_each_concurrent_mode_once(monkeypatch: pytest.MonkeyPatch) -> None:
    from nanolang.bench import runner

    ran: list[tuple[str, int]] = []
    monkeypatch.setattr(
        runner, "run_mode", lambda mode, b, m, jobs, gc: ran.append((mode, len(jobs)))
    )

    class Engine:
        def reset_kv(self, blocks: int | None, enable_prefix_caching: bool) -> None:
            assert blocks is None and enable_prefix_caching

    class Backend:
        llm = type("LLM", (), {"engine": Engine()})()

    workload = runner.Workload(PROGRAMS["judge"], None, [("main", {})] * 5, 0, 0)
    for modes, expect in [
        (("naive", "independent", "graph", "graph"), ["independent", "graph"]),
        (("graph", "independent"), ["graph", "independent"]),
        (("naive",), ["independent"]),
    ]:
        ran.clear()
        runner.warm_up(BenchConfig(modes=modes, warmup_instances=3), workload, Backend())  # type: ignore[arg-type]
        assert ran == [(m, 3) for m in expect]


def test_repeats_alternate_the_modes_and_keep_the_median_run(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from nanolang.bench import runner

    order: list[str] = []
    measure = runner.measure

    def noted(*args: Any) -> dict[str, Any]:
        order.append(args[-1])
        return measure(*args)

    monkeypatch.setattr(runner, "measure", noted)
    cfg = BenchConfig(
        programs=("few_shot",), modes=("independent", "graph"), instances=2, scale=0.05,
        pressure=(False,), max_num_seqs=8, model=str(default_model_dir()), device="cpu",
        repeats=3, warmup_instances=0,
    )  # fmt: skip
    records = run_programs(cfg)
    assert order == ["independent", "graph"] * 3
    from nanolang.bench.table import render

    table = render(records)
    assert "| few_shot | False | graph | 3 | " in table and "median s" in table
    assert [r["mode"] for r in records] == ["independent", "graph"]
    for r in records:
        assert r["repeats"] == 3 and len(r["repeat_seconds"]) == 3
        assert r["seconds"] == sorted(r["repeat_seconds"])[1]
        assert r["instances_ok"] == 2


def test_the_median_run_of_an_even_count_is_the_faster_middle_one() -> None:
    from nanolang.bench.runner import median_run

    runs = [{"seconds": s, "instances_per_s": 10 / s} for s in (4.0, 1.0, 3.0, 2.0)]
    chosen = median_run(runs)
    assert chosen["seconds"] == 2.0 and chosen["repeat_seconds"] == [4.0, 1.0, 3.0, 2.0]
    assert median_run(runs[:1])["repeats"] == 1
    with pytest.raises(ValueError, match="repeats"):
        BenchConfig(repeats=0)
