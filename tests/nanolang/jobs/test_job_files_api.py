"""The output-file checks are one function (``job_files.check_job_files``) behind both entry
points: ``nanolang eval`` and the Python API's ``ResultLog``. From Python, a ``ResultLog`` over
the dataset appended results to it (and cut its unterminated last row), one over a text file
cut that file's last line, and a folder in the way was a bare ``FileExistsError``. Each case
runs through both; the file is left as it was."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import pytest

import nanolang as nl
from nanolang.cli import main as cli_main
from nanolang.jobs import EvalJob, JobConfig, ResultLog, load_results, read_rows
from tests.nanolang.helpers import CountingBackend

DOUBLE = "program main(x) {\n    return int(x) + int(x)\n}\n"


def files(tmp_path: Path) -> tuple[Path, Path]:
    program, data = tmp_path / "double.nano", tmp_path / "d.jsonl"
    program.write_text(DOUBLE, encoding="utf-8")
    data.write_text('{"id": "a", "x": "1"}\n{"id": "b", "x": "2"}', encoding="utf-8")  # no \n
    return program, data


def through_cli(
    capsys: pytest.CaptureFixture[str], program: Path, data: Path, out: Path, report: Path | None
) -> str:
    argv = ["eval", str(program), "--data", str(data), "--out", str(out), "--quiet"]
    assert cli_main([*argv, *(["--report", str(report)] if report else [])]) == 1
    captured = capsys.readouterr()
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def through_python(
    capsys: pytest.CaptureFixture[str], program: Path, data: Path, out: Path, report: Path | None
) -> str:
    with pytest.raises(ValueError) as info:
        ResultLog(out, inputs=[data, program], report=report)
    return str(info.value)


ENTRIES: dict[str, Callable[..., str]] = {"cli": through_cli, "python": through_python}


def notes(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "notes.txt"
    path.write_text(text, encoding="utf-8")
    return path


CASES: dict[str, tuple[Callable[[Path, Path], tuple[Path, Path | None]], str]] = {
    "the dataset as out": (lambda tmp, data: (data, None), "is the job's input"),
    "a text file as out": (
        lambda tmp, data: (notes(tmp, "# my notes\nkeep this line"), None),
        "notes.txt:1: not a result",
    ),
    "a one-line text file as out": (
        lambda tmp, data: (notes(tmp, "keep this line, it has no newline"), None),
        "notes.txt:1: not a result",
    ),
    "a file where out's folder should be": (
        lambda tmp, data: (notes(tmp, "x\n") / "out.jsonl", None),
        "cannot write the results file",
    ),
    "a folder as out": (lambda tmp, data: (tmp, None), "is a directory"),
    "the report over out": (
        lambda tmp, data: (tmp / "out.jsonl", tmp / "out.jsonl"),
        "out.jsonl is the job's file",
    ),
    "the report over the dataset": (
        lambda tmp, data: (tmp / "out.jsonl", data),
        "d.jsonl is the job's file",
    ),
    "a report that cannot be made": (
        lambda tmp, data: (tmp / "out.jsonl", notes(tmp, "x\n") / "r.html"),
        "cannot write the report",
    ),
}


@pytest.mark.parametrize("entry", sorted(ENTRIES))
@pytest.mark.parametrize("case", list(CASES))
def test_both_entry_points_refuse_the_same_output_files(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], entry: str, case: str
) -> None:
    program, data = files(tmp_path)
    make, message = CASES[case]
    out, report = make(tmp_path, data)
    before = {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()}
    assert message in ENTRIES[entry](capsys, program, data, out, report)
    assert {p: p.read_bytes() for p in tmp_path.iterdir() if p.is_file()} == before
    assert not (tmp_path / "out.jsonl").exists()


def test_a_checked_result_log_still_runs_and_resumes(tmp_path: Path) -> None:
    """What passes the checks runs as before: a new results file, then a resume over it (a
    torn last line, a result's start, is cut and its row runs again)."""
    program, data = files(tmp_path)
    out = tmp_path / "results" / "out.jsonl"  # a folder made on the way
    module = nl.compile(DOUBLE).module
    rows, config = read_rows(data), JobConfig("main")
    with ResultLog(out, inputs=[data, program]) as log:
        EvalJob(module, CountingBackend(), config, log).run(rows)
    assert [line["output"] for line in load_results(out)] == [2, 4]
    first = out.read_bytes().split(b"\n")[0]
    out.write_bytes(first + b"\n" + b'{"id": "b", "li')  # b's write cut short
    with ResultLog(out, inputs=[data, program]) as log:
        assert log.done == {"a"}
        EvalJob(module, CountingBackend(), config, log).run(rows)
    assert [line["id"] for line in load_results(out)] == ["a", "b"]
    assert json.loads(out.read_bytes().split(b"\n")[1])["output"] == 4
