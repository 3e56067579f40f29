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


def test_run_trace_writes_the_graph_the_instance_ran(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    assert main(["run", SOLVE, "--arg", "review=great", "--seed", "1", "--trace", str(trace)]) == 0
    record = json.loads(trace.read_text())
    kinds = [n["kind"] for n in record["nodes"]]
    assert record["program"] == "classify" and kinds == ["select"]
    select = record["nodes"][0]
    assert select["alternatives"] and len(select["request_ids"]) == 3
    assert record["totals"]["requests"] == 3 and record["totals"]["prompt_tokens"] > 0
    assert select["finished_s"] >= select["submitted_s"] >= 0


def test_run_trace_into_a_missing_folder_is_refused_before_any_call(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    trace = tmp_path / "missing" / "trace.json"
    assert main(["run", SOLVE, "--arg", "review=great", "--trace", str(trace)]) == 2
    err = capsys.readouterr().err
    assert "folder" in err and "does not exist" in err and "Traceback" not in err
    assert not trace.exists()


def test_run_trace_of_forks_has_fork_edges(tmp_path: Path) -> None:
    trace = tmp_path / "trace.json"
    args = ["run", SOLVE, "--program", "solve", "--arg", "question=2+2", "--arg", "n=2"]
    assert main([*args, "--seed", "1", "--trace", str(trace)]) == 0
    record = json.loads(trace.read_text())
    forks = [n for n in record["nodes"] if n["kind"] == "fork"]
    assert len(forks) == 1
    fork_edges = [e for e in record["edges"] if e["kind"] == "fork"]
    assert len(fork_edges) == 2 and {e["from"] for e in fork_edges} == {forks[0]["id"]}
    extends = {(e["from"], e["to"]) for e in record["edges"] if e["kind"] == "extends"}
    scores = [n for n in record["nodes"] if n["name"] == "score"]
    thoughts = [n for n in record["nodes"] if n["name"] == "thought"]
    for s in scores:  # each score extends its own branch's thought
        assert any((t["id"], s["id"]) in extends for t in thoughts)
    assert all(s["new_prompt_tokens"] < s["prompt_tokens"] for s in scores)


def test_run_error_is_printed_once(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.nano"
    bad.write_text('program main() {\n    let n = int("x")\n    return n\n}\n')
    assert main(["run", str(bad)]) == 1
    err = capsys.readouterr().err
    assert err.count("int() cannot parse") == 1
    assert "bad.nano:2:13: runtime error" in err


def test_errors_without_a_position_do_not_print_unknown(tmp_path: Path) -> None:
    from nanolang.syntax.errors import NanoRuntimeError

    assert NanoRuntimeError("no position").format() == "runtime error: no position"


def test_check_of_an_empty_file_fails(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty.nano"
    empty.write_text("# nothing here\n")
    assert main(["check", str(empty)]) == 1
    assert "empty.nano:1:1: error:" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["check", "graph", "run", "eval"])
def test_a_file_that_is_not_utf8_is_one_clear_error(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.nano"
    bad.write_bytes(b"\xff\xfeprogram main() { }\n")
    extra = ["--data", str(tmp_path / "d.jsonl"), "--out", str(tmp_path / "o.jsonl")]
    assert main([command, str(bad), *(extra if command == "eval" else [])]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:1:1: syntax error: " in err and "not UTF-8" in err
    assert "Traceback" not in err


def test_a_program_nested_too_deeply_is_one_clear_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    deep = tmp_path / "deep.nano"
    deep.write_text("program main() {\n    let x = 1" + " + 1" * 3000 + "\n    return x\n}\n")
    assert main(["check", str(deep)]) == 1
    err = capsys.readouterr().err
    assert f"{deep}:2:" in err and "nested too deeply" in err


def test_nesting_under_the_limit_checks_graphs_and_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanolang.syntax.parser import MAX_NESTING

    n = MAX_NESTING - 8  # each operator or bracket is a level, each if two
    deep = tmp_path / "deep.nano"
    ifs = "if true {\n" * (n // 2) + '"x"\n' + "}\n" * (n // 2)
    lists = f"let x = {'[' * n}1{']' * n}\n"
    deep.write_text("program main() {\n" + ifs + lists + "return 1" + " + 1" * (n - 1) + "\n}\n")
    assert main(["check", str(deep)]) == 0
    assert main(["graph", str(deep)]) == 0
    capsys.readouterr()
    assert main(["run", str(deep)]) == 0
    assert capsys.readouterr().out.strip().splitlines()[-1] == str(n)


def test_check_takes_several_files_and_fails_if_any_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    good = tmp_path / "good.nano"
    good.write_text('program main() {\n    return "x"\n}\n')
    bad = tmp_path / "bad.nano"
    bad.write_text("program main() {\n    return y\n}\n")
    assert main(["check", str(good), SOLVE]) == 0
    assert f"{good}: ok (1 program: main)" in capsys.readouterr().err
    assert main(["check", str(bad), str(good), "/nonexistent.nano"]) == 1
    err = capsys.readouterr().err
    assert f"{bad}:2:12: error: undefined variable 'y'" in err
    assert f"{good}: ok (1 program: main)" in err and "cannot read /nonexistent.nano" in err
    assert err.rstrip().endswith("2 of 3 files failed their checks")


def test_ctrl_c_is_one_line_and_exit_status_130(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanolang.cli import check

    def interrupted(args: object) -> int:
        raise KeyboardInterrupt

    monkeypatch.setattr(check, "handle", interrupted)
    assert main(["check", SOLVE]) == 130
    assert capsys.readouterr().err == "nanolang check: interrupted\n"
