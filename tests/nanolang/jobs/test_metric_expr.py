"""Metrics written as nanolang expressions, on the command line or in the program's own file."""

from __future__ import annotations

from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo.suite import SUITE
from nanolang.jobs.metrics import MetricError, declared_metric, resolve_metric


def test_expression_metric_compares_output_and_expected() -> None:
    metric = resolve_metric("expr: int(output) == int(expected)")
    assert metric("12", 12) is True
    assert metric(" 7", "8") is False
    assert metric("not a number", 3) is False  # a failing expression scores the row wrong


def test_bad_metrics_are_rejected_with_a_message() -> None:
    with pytest.raises(MetricError, match="unknown metric 'nope'"):
        resolve_metric("nope")
    with pytest.raises(MetricError, match="does not parse"):
        resolve_metric("expr: output ==")
    with pytest.raises(MetricError, match="not a boolean"):
        resolve_metric("expr: len(output)")("abc", "x")


def test_declared_metric_is_read_from_a_comment_line() -> None:
    src = "# classify reviews\n# metric: expr: lower(output) == lower(expected)\nprogram p() {}\n"
    assert declared_metric(src) == "expr: lower(output) == lower(expected)"
    assert declared_metric("program p() {}") is None


def test_eval_uses_the_metric_the_program_declares(tmp_path: Path, capsys) -> None:
    item = next(e for e in SUITE if e.name == "classify")
    program = tmp_path / "classify.nano"
    program.write_text(
        "# metric: expr: lower(output) == lower(expected) and len(output) > 0\n"
        + item.path.read_text()
    )
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(item.data_path.read_text().splitlines()[:4]) + "\n")
    argv = ["eval", str(program), "--data", str(data), "--out", str(tmp_path / "r.jsonl")]
    assert cli_main([*argv, "--quiet"]) == 0
    shown = capsys.readouterr()
    assert "expr: lower(output) == lower(expected)" in shown.out + shown.err
