"""The CLI: check, graph (text/json/dot) and run, exit codes, stdout/stderr discipline."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanolang.cli import main
from nanolang.cli.run import parse_args_list
from tests.nanolang.helpers import PROGRAMS

SOLVE = str(PROGRAMS / "solve.nano")


def test_check_ok(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", SOLVE]) == 0
    assert "ok (3 programs: classify, solve, pick)" in capsys.readouterr().err


def test_check_reports_every_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.nano"
    bad.write_text('program p(a, a) {\n    gen g(temperature = "hot")\n}\n')
    assert main(["check", str(bad)]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1:14: error: duplicate parameter 'a'" in err
    assert f"{bad}:2:25: error: bad value for temperature: expected a number" in err
    assert "                            ^" in err


def test_check_syntax_error(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.nano"
    bad.write_text("program p() {\n    gen\n}\n")
    assert main(["check", str(bad)]) == 1
    assert f"{bad}:3:1: syntax error: unexpected '}}'; expected a name" in capsys.readouterr().err


def test_check_missing_file(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["check", "/nonexistent.nano"]) == 1
    assert "cannot read /nonexistent.nano" in capsys.readouterr().err


@pytest.mark.parametrize("fmt", ["text", "json", "dot"])
def test_graph_formats(fmt: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["graph", SOLVE, "--format", fmt]) == 0
    out = capsys.readouterr().out
    if fmt == "json":
        assert [p["name"] for p in json.loads(out)["programs"]] == ["classify", "solve", "pick"]
    elif fmt == "dot":
        assert out.startswith("digraph nanolang {")
    else:
        assert out.startswith("program classify(")


def test_arg_values_parse_as_json_where_they_can() -> None:
    args = parse_args_list(["n=3", "xs=[1, 2]", "s=hello world", "b=true", 'q="quoted"', "e="])
    assert args == {"n": 3, "xs": [1, 2], "s": "hello world", "b": True, "q": "quoted", "e": ""}


def test_run_prints_json_last_on_stdout(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SOLVE, "--arg", "review=great", "--seed", "1"]) == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert json.loads(out[-1]) in ["positive", "negative", "neutral"]


def test_run_missing_argument_is_an_error(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SOLVE, "--program", "pick"]) == 1
    err = capsys.readouterr().err
    assert "solve.nano:21:9: runtime error: pick() is missing argument(s): candidates" in err


def test_run_bad_arg_syntax(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["run", SOLVE, "--arg", "novalue"]) == 2
    assert "--arg expects K=V" in capsys.readouterr().err
