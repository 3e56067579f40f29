"""bench/env_ab.py: environment variants of the engine benchmark in alternating processes, every
record kept with its variant and round, each workload's mean and ratio to the first variant."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from bench_scripts import load_bench


def _record(workload: str, variant: str, tps: float, step_ms: float) -> dict:
    steps = {"1-16": {"steps": 3, "mean_ms": step_ms, "seconds": 1.0}}
    return {"workload": workload, "variant": variant, "total_tokens_per_s": tps,
            "decode_steps_by_batch": steps}  # fmt: skip


def test_the_summary_gives_each_variants_runs_mean_and_ratio() -> None:
    ab = load_bench("env_ab")
    records = [_record("lmsys", "A", 100.0, 5.0), _record("lmsys", "B", 110.0, 4.0),
               _record("lmsys", "A", 102.0, 5.2), _record("lmsys", "B", 112.0, 4.2)]  # fmt: skip
    s = ab.summarize(records, ["A", "B"])
    assert s["lmsys"]["A"] == {"total_tokens_per_s": [100.0, 102.0], "mean": 101.0,
                               "decode_step_ms": {"1-16": 5.1}, "ratio": 1.0}  # fmt: skip
    assert s["lmsys"]["B"]["ratio"] == round(111.0 / 101.0, 4)
    assert "| lmsys | B | 110 / 112 | 111 | 1.099x | 1-16: 4.1 |" in ab.table(s)


def test_the_device_time_outside_the_graph_gets_a_column_when_recorded() -> None:
    ab = load_bench("env_ab")
    plain = [_record("lmsys", "A", 100.0, 5.0), _record("lmsys", "B", 110.0, 4.0)]
    assert "outside graph" not in ab.table(ab.summarize(plain, ["A", "B"]))
    device = {"1-16": {"steps": 3, "step_ms": 5.0, "device_ms": 4.9, "graph_ms": 4.5,
                       "outside_graph_ms": 0.4}}  # fmt: skip
    timed = [{**plain[0], "decode_device_by_batch": device}, plain[1]]
    s = ab.summarize(timed, ["A", "B"])
    assert s["lmsys"]["A"]["outside_graph_ms"] == {"1-16": 0.4}
    assert "outside_graph_ms" not in s["lmsys"]["B"]
    lines = ab.table(s).splitlines()
    assert lines[0].endswith("| outside graph ms by batch |") and lines[1].count("---") == 7
    assert lines[2].endswith("| 1-16: 5.0 | 1-16: 0.4 |") and lines[3].endswith("| - |")


@pytest.mark.parametrize("bad", ["NANOLANG_KV_ORDER", "=1", "1X=2", "A=1,B"])
def test_a_malformed_variant_is_refused(bad: str) -> None:
    with pytest.raises(ValueError, match="expected NAME=VALUE"):
        load_bench("env_ab").parse_variant(bad)
    assert load_bench("env_ab").parse_variant("A=1,B_2=x") == {"A": "1", "B_2": "x"}


BAD = "rotary_store_kv=torch"  # a fused operator: the registry refuses to force it


def test_variants_alternate_in_processes_of_their_own(tiny_llama: str, tmp_path: Path) -> None:
    """Two rounds of two variants on the CPU: four processes, A B A B, each one's environment
    really set (A forces a fused operator's backend, which the kernel registry refuses, so its
    processes fail and only B's records land)."""
    ab = load_bench("env_ab")
    out = tmp_path / "ab.json"
    rc = ab.main([
        "--out", str(out), "--rounds", "2", "--budget", "600", "--min-run", "1",
        "--variant", f"NANOLANG_KERNELS={BAD}", "--variant", "NANOLANG_KERNELS=torch", "--",
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu", "--workloads", "lmsys",
        "--num-requests", "2", "--scale", "0.02",
    ])  # fmt: skip
    assert rc == 0
    data = json.loads(out.read_text())
    a, b = f"NANOLANG_KERNELS={BAD}", "NANOLANG_KERNELS=torch"
    assert [(r["variant"], r["round"]) for r in data["runs"]] == [(a, 0), (b, 0), (a, 1), (b, 1)]
    assert [r["rc"] != 0 for r in data["runs"]] == [True, False, True, False]
    assert [(r["variant"], r["round"]) for r in data["records"]] == [(b, 0), (b, 1)]
    assert "rotary_store_kv follows the backend of rotary" in out.with_suffix(".log").read_text()
    assert data["summary"]["lmsys"][b]["ratio"] is None  # no runs of the first variant


@pytest.mark.parametrize(
    ("args", "message"),
    [(["--variant", "A=1"], "two or more --variant"),
     (["--variant", "A=1", "--variant", "A=2"], "the benchmark's args after --"),
     (["--variant", "A=1", "--variant", "A=2", "--budget", "0", "--", "--model", "m"],
      "--budget and --min-run must be positive"),
     (["--variant", "A=1", "--variant", "A=2", "--", "--out", "x.json"], "--out is this script's"),
     (["--variant", "A", "--variant", "A=2", "--", "--model", "m"], "expected NAME=VALUE")],
)  # fmt: skip
def test_bad_arguments_are_refused_before_any_run(
    args: list[str], message: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "ab.json"
    with pytest.raises(SystemExit):
        load_bench("env_ab").main(["--out", str(out), *args])
    assert message in capsys.readouterr().err and not out.exists()
