"""A results file is split at newlines only. Results are written with ``ensure_ascii=False``,
which keeps U+2028, U+2029 and U+0085 raw inside JSON strings (text scraped from the web holds
them); the reader split at them too (``str.splitlines``), so such a row's line read as broken
pieces: the summary missed it, and every rerun ran it again and appended it once more. And a
rewrite (--retry-failed, --restart) replaces the file a symbolic link names, not the link."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.jobs import ResultLog, load_results

ODD = "one\u2028two\u2029three\x85four"

ECHO = """
program main(x) {
    return x
}
"""


def test_a_line_holding_unicode_line_separators_is_one_result(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [{"id": "a", "output": ODD}, {"id": "b", "output": "plain"}]
    path.write_text("".join(json.dumps(x, ensure_ascii=False) + "\n" for x in lines), "utf-8")
    assert load_results(path) == lines
    assert ResultLog(path).done == {"a", "b"}


def test_eval_rerun_over_such_rows_runs_nothing_and_counts_each_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = tmp_path / "echo.nano"
    program.write_text(ECHO, encoding="utf-8")
    data, out = tmp_path / "d.jsonl", tmp_path / "out.jsonl"
    rows = [{"id": f"r{i}", "x": f"{ODD} {i}", "expected": f"{ODD} {i}"} for i in range(3)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["eval", str(program), "--data", str(data), "--out", str(out), "--quiet"]
    assert cli_main(argv) == 0
    assert cli_main(argv) == 0  # the rerun finds every row done
    captured = capsys.readouterr().out
    assert captured.count("3 / 3") == 2, captured  # rows done / in dataset, both runs
    assert "this run: rows / failed │ 0 / 0" in " ".join(captured.split()), captured
    assert "100.0% (3/3)" in captured
    assert sorted(r["id"] for r in load_results(out)) == ["r0", "r1", "r2"]


def test_batch_rerun_over_such_custom_ids_writes_each_once(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        {"custom_id": f"{ODD}-{i}", "method": "POST", "url": "/v1/embeddings", "body": {}}
        for i in range(2)
    ]  # answered at once with an error line: no model call needed
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    argv = ["batch", str(src), str(out), "--model-name", "demo", "--quiet"]
    assert cli_main(argv) == 1  # every request of the run failed (an unknown url)
    assert cli_main(argv) == 0  # the rerun finds every request done: nothing runs
    assert sorted(x["custom_id"] for x in load_results(out)) == [f"{ODD}-0", f"{ODD}-1"]


def test_retry_failed_and_restart_rewrite_the_file_a_link_names(tmp_path: Path) -> None:
    """An --out that is a symbolic link (to a shared volume, say): --retry-failed and --restart
    renamed their new file over the link itself, so the link became a file of its own and its
    target kept the old lines."""
    (tmp_path / "real").mkdir()
    target, link = tmp_path / "real" / "out.jsonl", tmp_path / "out.jsonl"
    link.symlink_to(target)
    src = tmp_path / "in.jsonl"
    line = {"custom_id": "a", "method": "POST", "url": "/v1/embeddings", "body": {}}
    src.write_text(json.dumps(line) + "\n", encoding="utf-8")  # fails at once: no model call
    argv = ["batch", str(src), str(link), "--model-name", "demo", "--quiet"]
    for extra in ([], ["--retry-failed"], ["--restart"]):
        assert cli_main([*argv, *extra]) == 1  # the one request failed
        assert link.is_symlink() and link.resolve() == target.resolve()
        assert len(load_results(target)) == 1
