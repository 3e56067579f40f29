"""Batch jobs without requests: datasets, the results file, metrics, failures and --max-errors.

The programs here make no gen/select, so they run on the executor with a backend that is never
asked for anything (the engine is exercised by tests/programs and test_eval_resume.py)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nanolang as nl
from nanolang.backends.base import Backend
from nanolang.jobs import (
    DatasetError,
    EvalJob,
    JobConfig,
    ResultLog,
    load_results,
    read_rows,
    repair,
    summarize,
)
from nanolang.jobs.metrics import METRICS
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams

PARSE = """
program main(x) {
    return int(x)
}
"""


class NoRequests(Backend):
    """Fails loudly if a program of these tests ever sends a request."""

    @property
    def tokenizer(self) -> Any:
        return None

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        raise AssertionError("no request expected")

    def close(self) -> None:
        pass


def write_rows(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run_job(tmp_path: Path, rows: list[dict[str, Any]], max_errors: int | None = None) -> Any:
    data = write_rows(tmp_path / "data.jsonl", rows)
    module = nl.compile(PARSE).module
    with ResultLog(tmp_path / "out.jsonl") as log:
        stats = EvalJob(module, NoRequests(), JobConfig("main", max_errors=max_errors), log).run(
            read_rows(data)
        )
    return stats, load_results(tmp_path / "out.jsonl"), read_rows(data)


def test_rows_take_id_else_line_number_and_split_expected(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text('{"x": "1", "expected": 1}\n\n{"id": 7, "x": "2"}\n', encoding="utf-8")
    rows = read_rows(data)
    assert [(r.id, r.line, r.args, r.has_expected) for r in rows] == [
        ("0", 0, {"x": "1"}, True),
        ("7", 2, {"x": "2"}, False),
    ]


def test_duplicate_ids_and_bad_lines_are_errors_naming_file_and_line(tmp_path: Path) -> None:
    rows = [{"id": 1}, {"id": 2}, {"id": 1}]
    with pytest.raises(DatasetError, match=r"d\.jsonl:3: id '1' repeats \(first on line 1\)"):
        read_rows(write_rows(tmp_path / "d.jsonl", rows))
    (tmp_path / "e.jsonl").write_text('{"x": 1}\n[1]\n', encoding="utf-8")
    with pytest.raises(DatasetError, match=r"e\.jsonl:2: a row must be a JSON object"):
        read_rows(tmp_path / "e.jsonl")


def test_a_byte_order_mark_is_not_data_and_bad_bytes_name_their_line(tmp_path: Path) -> None:
    """Editors on Windows start UTF-8 files with a byte order mark; a file in another encoding
    is an error naming the file and line (it was a bare codec message)."""
    data = tmp_path / "d.jsonl"
    data.write_text('{"x": "1"}\n{"x": "2"}\n', encoding="utf-8-sig")
    assert [r.args for r in read_rows(data)] == [{"x": "1"}, {"x": "2"}]
    data.write_bytes('{"x": "1"}\n{"x": "caf\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"d\.jsonl:2: not UTF-8"):
        read_rows(data)


def test_repair_cuts_only_a_torn_last_line(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    path.write_bytes(b'{"id": "a"}\n{"id": "b"}\n{"id": "c", "out')
    assert repair(path) == len(b'{"id": "c", "out')
    assert path.read_bytes() == b'{"id": "a"}\n{"id": "b"}\n'
    assert repair(path) == 0
    assert ResultLog(path).done == {"a", "b"}


def test_failed_rows_are_kept_with_their_error_and_counted(tmp_path: Path) -> None:
    rows = [{"x": "1", "expected": 1}, {"x": "oops", "expected": 2}, {"x": "3", "expected": 4}]
    stats, results, data = run_job(tmp_path, rows)
    assert (stats.finished, stats.failed, stats.stopped) == (3, 1, None)
    by_id = {r["id"]: r for r in results}
    assert by_id["0"]["output"] == 1 and by_id["0"]["error"] is None
    assert "int() cannot parse 'oops'" in by_id["1"]["error"] and by_id["1"]["output"] is None
    summary = summarize(data, results, "exact")
    assert (summary.results, summary.failed, summary.correct, summary.scored) == (3, 1, 1, 3)


def test_max_errors_stops_the_job(tmp_path: Path) -> None:
    rows = [{"x": "bad"}] * 3 + [{"x": str(i)} for i in range(20)]
    stats, results, _ = run_job(tmp_path, rows, max_errors=1)
    assert stats.stopped == "2 rows failed (more than --max-errors 1)"
    assert (stats.finished, stats.failed, len(results)) == (2, 2, 2)


def test_rerun_skips_done_rows(tmp_path: Path) -> None:
    rows = [{"x": str(i), "expected": i} for i in range(5)]
    run_job(tmp_path, rows[:2])
    stats, results, data = run_job(tmp_path, rows)
    assert stats.finished == 3
    assert sorted(r["id"] for r in results) == ["0", "1", "2", "3", "4"]
    assert summarize(data, results, "exact").correct == 5


@pytest.mark.parametrize(
    ("metric", "output", "expected", "ok"),
    [
        ("exact", 3, 3.0, True),
        ("exact", " B", "B", True),
        ("exact", [1, 2], [1, 3], False),
        ("choice", "Positive ", "positive", True),
        ("choice", "negative", "positive", False),
        ("json", '{"a": 1}', {"a": 1}, True),
        ("json", '{"a": 2}', {"a": 1}, False),
        ("contains", "the answer is 42", 42, True),
        ("contains", "the answer is 4", 42, False),
    ],
)
def test_metrics(metric: str, output: Any, expected: Any, ok: bool) -> None:
    assert METRICS[metric](output, expected) is ok
