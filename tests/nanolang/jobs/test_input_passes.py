"""Each input line is parsed once per job, plus once more when its row runs: the one scan of the
input keeps per row what the job needs before and after its rows run (fingerprint, group key;
batch: the url, eval: the expected answer), so the resume check, the ``--shard`` order and the
summary read no row again (``nanolang batch`` parsed every line five times, ``nanolang eval``
four or five; from Python, ``read_rows`` + ``EvalJob`` + ``summarize`` three times). Counted on
real files through the CLIs and the Python API by wrapping ``json.loads``."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

import nanolang as nl
from nanolang.backends import OpenAI
from nanolang.cli import main as cli_main
from nanolang.jobs import (
    EvalJob,
    JobConfig,
    ResultLog,
    iter_results,
    load_results,
    read_rows,
    summarize,
)
from tests.nanolang.jobs.test_streamed_rows import TO_INT, completions_server

ROWS = 40


@contextmanager
def counted_parses(
    path: Path, monkeypatch: pytest.MonkeyPatch, each: Callable[[], None] | None = None
) -> Iterator[Counter[int]]:
    """How many times each line of ``path`` (by 0-based index) goes through ``json.loads``
    while the block runs, wherever it is parsed; ``each()`` is called at each of them."""
    line_of = {text.strip(): i for i, text in enumerate(path.read_text("utf-8").splitlines())}
    counts: Counter[int] = Counter()
    loads: Callable[..., Any] = json.loads

    def counting(text: str | bytes, *args: Any, **kwargs: Any) -> Any:
        key = (text.decode("utf-8") if isinstance(text, bytes | bytearray) else text).strip()
        if key in line_of:
            counts[line_of[key]] += 1
            if each is not None:
                each()
        return loads(text, *args, **kwargs)

    with monkeypatch.context() as patch:
        patch.setattr(json, "loads", counting)
        yield counts


def assert_parsed_at_most_twice(counts: Counter[int], lines: int) -> None:
    assert set(counts) == set(range(lines)), "every line is checked"
    assert max(counts.values()) <= 2, sorted(counts.items(), key=lambda kv: -kv[1])[:5]


def test_batch_parses_each_request_line_at_most_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    with src.open("w", encoding="utf-8") as f:
        for i in range(ROWS):
            body = {"model": "demo", "prompt": f"p{i % 3} {i}", "max_tokens": 1}
            line = {"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions", "body": body}
            f.write(json.dumps(line) + "\n")
    report = tmp_path / "report.html"
    with completions_server() as url:
        argv = ["batch", str(src), str(out), "--server", url, "--quiet", "--report", str(report)]
        for extra in (["--shard", "0/2"], [], ["--retry-failed"], ["--shard", "1/2", "--restart"]):
            with counted_parses(src, monkeypatch) as counts:
                assert cli_main([*argv, *extra]) == 0
            assert_parsed_at_most_twice(counts, ROWS)
    assert sorted(line["custom_id"] for line in load_results(out)) == sorted(
        f"r{i}" for i in range(ROWS)
    )


def test_eval_parses_each_row_at_most_twice(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    program, data, out = tmp_path / "to_int.nano", tmp_path / "d.jsonl", tmp_path / "out.jsonl"
    program.write_text(TO_INT, encoding="utf-8")
    with data.open("w", encoding="utf-8") as f:
        for i in range(ROWS):
            row = {"x": str(i), "pad": "p", "subject": f"s{i % 3}", "expected": i}
            f.write(json.dumps(row) + "\n")
    argv = ["eval", str(program), "--data", str(data), "--out", str(out), "--quiet",
            "--group-by", "subject", "--report", str(tmp_path / "r.html")]  # fmt: skip
    for extra in (["--shard", "0/2"], [], ["--retry-failed"], ["--shard", "1/2", "--restart"]):
        with counted_parses(data, monkeypatch) as counts:
            assert cli_main([*argv, *extra]) == 0
        assert_parsed_at_most_twice(counts, ROWS)
    shown = " ".join(capsys.readouterr().out.replace("│", " ").split())
    assert f"accuracy 100.0% ({ROWS}/{ROWS})" in shown, shown  # the answers kept by the scan
    results = load_results(out)
    assert sorted(int(line["id"]) for line in results) == list(range(ROWS))
    assert all(line["output"] == int(line["id"]) for line in results)


def test_the_python_api_parses_each_row_once_in_the_scan_and_once_when_it_runs(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As docs/programs.md's example: ``summarize`` of ``read_rows``' rows takes the expected
    answers the scan kept (it read every row a third time)."""
    data, out = tmp_path / "d.jsonl", tmp_path / "out.jsonl"
    with data.open("w", encoding="utf-8") as f:
        for i in range(ROWS):
            f.write(json.dumps({"x": str(i), "pad": "p", "expected": i if i % 4 else -1}) + "\n")
    module = nl.compile(TO_INT).module
    backend = OpenAI("http://127.0.0.1:9", "unused")  # the program makes no model call
    with counted_parses(data, monkeypatch) as counts:
        rows = read_rows(data)
        with ResultLog(out, inputs=[data]) as log:
            EvalJob(module, backend, JobConfig("main"), log).run(rows)
        summary = summarize(rows, iter_results(out), "exact")
    assert counts == Counter(dict.fromkeys(range(ROWS), 2))
    assert (summary.correct, summary.scored) == (ROWS * 3 // 4, ROWS)


def test_bad_input_stops_either_job_before_it_starts_with_the_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The one scan still checks every line first: a malformed line or a missing file is one
    clear error and the results file is not made."""
    program, out = tmp_path / "to_int.nano", tmp_path / "out.jsonl"
    program.write_text(TO_INT, encoding="utf-8")
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"custom_id": "a", "x": "1", "pad": ""}\n{"custom_id": \n', encoding="utf-8")
    missing = tmp_path / "missing.jsonl"
    jobs = {
        "batch": lambda src: ["batch", str(src), str(out), "--server", "http://127.0.0.1:9"],
        "eval": lambda src: ["eval", str(program), "--data", str(src), "--out", str(out)],
    }
    for argv in jobs.values():
        assert cli_main([*argv(bad), "--quiet"]) == 1
        assert capsys.readouterr().err.strip() == f"error: {bad}:2: not JSON: Expecting value"
        assert cli_main([*argv(missing), "--quiet"]) == 1
        err = capsys.readouterr().err.strip()
        assert err.startswith("error: ") and "No such file" in err and str(missing) in err, err
        assert not out.exists()
