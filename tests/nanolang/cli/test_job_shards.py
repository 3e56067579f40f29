"""``--shard I/N`` outputs put together with ``cat`` are the whole job's results, and the
summary over them counts each row once, even when a shard's file went in twice (or a shard was
rerun with another N, so two files hold the same rows): it said '6 / 4' rows done and scored
the twice-counted rows twice. ``--group-by`` keeps a group in one shard without making its
field a program argument."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo.suite import entry
from nanolang.jobs import load_results

ECHO = """
program main(x) {
    return x
}
"""


def concatenated(tmp_path: Path, order: list[int]) -> Path:
    """``cat s{k}.jsonl ... > all.jsonl`` for the shards in ``order`` (one of them twice)."""
    whole = tmp_path / "all.jsonl"
    parts = [(tmp_path / f"s{k}.jsonl").read_text(encoding="utf-8") for k in order]
    whole.write_text("".join(parts), encoding="utf-8")
    return whole


def table(text: str) -> str:
    """The summary table with its borders and padding squeezed out."""
    return " ".join(text.replace("│", " ").split())


def test_eval_summary_over_concatenated_shards_counts_each_row_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program, data = tmp_path / "echo.nano", tmp_path / "d.jsonl"
    program.write_text(ECHO, encoding="utf-8")
    rows = [{"id": f"r{i}", "x": i, "expected": 0 if i == 3 else i} for i in range(4)]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ["eval", str(program), "--data", str(data), "--quiet"]
    for k in range(2):
        out = tmp_path / f"s{k}.jsonl"
        assert cli_main([*base, "--out", str(out), "--shard", f"{k}/2"]) == 0
    whole = concatenated(tmp_path, [0, 0, 1])
    capsys.readouterr()
    assert cli_main([*base, "--out", str(whole)]) == 0
    shown = table(capsys.readouterr().out)
    assert "rows (done / in dataset) 4 / 4" in shown, shown
    assert "exact accuracy 75.0% (3/4)" in shown, shown
    assert "this run: rows / failed 0 / 0" in shown, shown


def test_batch_summary_over_concatenated_shards_counts_each_request_once(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src = tmp_path / "in.jsonl"
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions",
         "body": {"model": "demo", "prompt": f"Q{i}:", "max_tokens": 2, "seed": i}}
        for i in range(4)
    ]  # fmt: skip
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    base = ["batch", str(src), "--model-name", "demo", "--quiet"]
    for k in range(2):
        out = tmp_path / f"s{k}.jsonl"
        assert cli_main([*base[:2], str(out), *base[2:], "--shard", f"{k}/2"]) == 0
    whole = concatenated(tmp_path, [0, 1, 1])
    capsys.readouterr()
    assert cli_main([*base[:2], str(whole), *base[2:]]) == 0
    shown = table(capsys.readouterr().out)
    assert "rows (done / in dataset) 4 / 4" in shown, shown
    assert "errors 0" in shown, shown


def test_a_group_by_field_the_program_does_not_take_is_not_an_argument(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """MMLU rows carry a ``subject`` that no program parameter takes; ``--group-by subject``
    (as docs/programs.md shows for mmlu.nano) made every row fail with 'got unknown
    argument(s) subject'. It groups the shards' rows and is no argument."""
    mmlu = entry("mmlu")
    lines = mmlu.data_path.read_text(encoding="utf-8").splitlines()[:4]
    rows = [{**json.loads(line), "subject": "geo" if i % 2 else "capitals"} for i, line in
            enumerate(lines)]  # fmt: skip
    data = tmp_path / "d.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    base = ["eval", str(mmlu.path), "--data", str(data), "--group-by", "subject", "--quiet"]
    for k in range(2):
        out = tmp_path / f"s{k}.jsonl"
        assert cli_main([*base, "--out", str(out), "--shard", f"{k}/2"]) == 0
    shards = [load_results(tmp_path / f"s{k}.jsonl") for k in range(2)]
    assert all(line["error"] is None for shard in shards for line in shard), shards
    subject = {r["id"]: r["subject"] for r in rows}
    assert [{subject[line["id"]] for line in shard} for shard in shards] == [
        {"capitals"},
        {"geo"},
    ]
    capsys.readouterr()
    assert cli_main([*base, "--out", str(concatenated(tmp_path, [0, 1]))]) == 0
    assert "rows (done / in dataset) 4 / 4" in table(capsys.readouterr().out)
