"""The files ``nanolang eval`` and ``nanolang batch`` are given: an output file that is one of
the job's inputs or not a results file, an output or report location that cannot be made, and
an empty input are refused before anything runs, with one line naming the file and nothing
written (the dataset given as ``--out`` got the results appended and its unterminated last line
cut, and ``--restart``, which the error suggested, emptied it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo.suite import entry

GSM8K = entry("gsm8k")


def dataset(path: Path, rows: int = 2) -> Path:
    lines = GSM8K.data_path.read_text(encoding="utf-8").splitlines()[:rows]
    path.write_text("\n".join(lines), encoding="utf-8")  # no newline after the last row
    return path


def requests(path: Path, rows: int = 2) -> Path:
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions",
         "body": {"model": "demo", "prompt": f"Q{i}:", "max_tokens": 2}}
        for i in range(rows)
    ]  # fmt: skip
    path.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return path


def eval_job(data: Path, out: Path, *extra: str) -> int:
    argv = ["eval", str(GSM8K.path), "--data", str(data), "--out", str(out), "--quiet"]
    return cli_main([*argv, *extra])


def batch_job(src: Path, out: Path, *extra: str) -> int:
    return cli_main(["batch", str(src), str(out), "--model-name", "demo", "--quiet", *extra])


def one_error(capsys: pytest.CaptureFixture[str]) -> str:
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err, captured.err
    lines = captured.err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: "), captured.err
    return lines[0]


def refused(status: int, message: str, capsys: pytest.CaptureFixture[str]) -> None:
    """The job exited with 1 and one error line holding ``message`` (no traceback)."""
    assert status == 1
    assert message in one_error(capsys), message


@pytest.mark.parametrize("extra", [(), ("--restart",), ("--retry-failed",)])
def test_the_dataset_as_out_is_refused_and_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    data = dataset(tmp_path / "d.jsonl")
    before = data.read_bytes()
    refused(eval_job(data, data, *extra), "is the job's input", capsys)
    assert data.read_bytes() == before
    alias = tmp_path / "sub" / ".." / "d.jsonl"  # another spelling of the same file
    tmp_path.joinpath("sub").mkdir()
    refused(eval_job(data, alias, *extra), "is the job's input", capsys)
    assert data.read_bytes() == before


def test_the_program_as_out_is_refused(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    program = tmp_path / "p.nano"
    program.write_bytes(GSM8K.path.read_bytes().rstrip(b"\n"))
    before = program.read_bytes()
    data = dataset(tmp_path / "d.jsonl")
    argv = ["eval", str(program), "--data", str(data), "--out", str(program), "--quiet"]
    refused(cli_main(argv), "is the job's input", capsys)
    assert program.read_bytes() == before


@pytest.mark.parametrize("extra", [(), ("--restart",)])
def test_the_batch_input_as_output_is_refused_and_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: tuple[str, ...]
) -> None:
    src = requests(tmp_path / "in.jsonl")
    before = src.read_bytes()
    refused(batch_job(src, src, *extra), "is the job's input", capsys)
    assert src.read_bytes() == before


def test_an_out_that_is_not_a_results_file_is_refused_and_left_untouched(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    notes = tmp_path / "notes.txt"
    notes.write_text("# my notes\nkeep this line", encoding="utf-8")
    before = notes.read_bytes()
    refused(eval_job(dataset(tmp_path / "d.jsonl"), notes), f"{notes}:1: not a result", capsys)
    assert notes.read_bytes() == before
    refused(batch_job(requests(tmp_path / "in.jsonl"), notes), f"{notes}:1: not a result", capsys)
    assert notes.read_bytes() == before


def test_an_output_location_that_cannot_be_made_is_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "results"
    blocker.write_text("a file where the folder should be\n", encoding="utf-8")
    out = blocker / "out.jsonl"
    assert eval_job(dataset(tmp_path / "d.jsonl"), out) == 1
    assert f"cannot write the results file {out}" in one_error(capsys)
    assert batch_job(requests(tmp_path / "in.jsonl"), out) == 1
    assert f"cannot write the results file {out}" in one_error(capsys)
    folder = tmp_path / "folder"
    folder.mkdir()
    refused(eval_job(dataset(tmp_path / "d.jsonl"), folder), "is a directory", capsys)


def test_a_report_that_cannot_be_written_is_refused_before_any_row_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "reports"
    blocker.write_text("a file where the folder should be\n", encoding="utf-8")
    report = blocker / "r.html"
    out = tmp_path / "out.jsonl"
    assert eval_job(dataset(tmp_path / "d.jsonl"), out, "--report", str(report)) == 1
    assert f"cannot write the report {report}" in one_error(capsys)
    assert not out.exists() or out.read_bytes() == b""
    assert batch_job(requests(tmp_path / "in.jsonl"), out, "--report", str(report)) == 1
    assert f"cannot write the report {report}" in one_error(capsys)
    assert not out.exists() or out.read_bytes() == b""


def test_an_empty_input_is_an_error_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n \n", encoding="utf-8")
    refused(eval_job(empty, tmp_path / "a.jsonl"), f"{empty}: no rows", capsys)
    refused(batch_job(empty, tmp_path / "b.jsonl"), f"{empty}: no rows", capsys)


def test_a_report_over_the_results_or_the_dataset_is_refused(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--report`` naming the results file (or the dataset) wrote the HTML over it after the
    last row: every result gone."""
    data, out = dataset(tmp_path / "d.jsonl"), tmp_path / "out.jsonl"
    before = data.read_bytes()
    for report in (out, data):
        assert eval_job(data, out, "--report", str(report)) == 1
        assert f"the report {report} is the job's file" in one_error(capsys)
        assert not out.exists() or out.read_bytes() == b""
    src = requests(tmp_path / "in.jsonl")
    assert batch_job(src, out, "--report", str(out)) == 1
    assert f"the report {out} is the job's file" in one_error(capsys)
    assert data.read_bytes() == before
