"""Numeric options of ``nanolang eval`` and ``nanolang batch`` are checked where argparse reads
them, with their own message: ``batch --concurrency 0`` hung for ever (no row ever got a slot),
a negative one failed after the model load with asyncio's 'Semaphore initial value must be >=
0', ``--max-errors -1`` ran and then stopped at the first row, and ``--shard 3/2`` said only
'invalid parse value'."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo.suite import REPO, entry
from nanolang.jobs.runner import finished_rows

GSM8K = entry("gsm8k")


def requests(path: Path) -> Path:
    line = {"custom_id": "r0", "method": "POST", "url": "/v1/completions",
            "body": {"model": "demo", "prompt": "Q:", "max_tokens": 2}}  # fmt: skip
    path.write_text(json.dumps(line) + "\n", encoding="utf-8")
    return path


def test_batch_with_no_concurrency_is_refused_not_hung(tmp_path: Path) -> None:
    src, out = requests(tmp_path / "in.jsonl"), tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "nanolang", "batch", str(src), str(out), "--concurrency", "0"]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=120)
    assert done.returncode == 2, done.stderr
    assert "argument --concurrency: must be at least 1, got 0" in done.stderr
    assert not out.exists()


@pytest.mark.parametrize(
    ("option", "value", "message"),
    [
        ("--concurrency", "-1", "argument --concurrency: must be at least 1, got -1"),
        ("--concurrency", "many", "argument --concurrency: expected an integer, got 'many'"),
        ("--max-errors", "-1", "argument --max-errors: must be at least 0, got -1"),
        ("--shard", "3/2", "argument --shard: --shard I/N needs 0 <= I < N, got 3/2"),
        ("--shard", "half", "argument --shard: --shard takes I/N (e.g. 0/4), got 'half'"),
        ("--chunk-rows", "0", "argument --chunk-rows: must be at least 1, got 0"),
        ("--replica-cpus", "0", "argument --replica-cpus: must be more than 0, got 0"),
    ],
)
@pytest.mark.parametrize("command", ["eval", "batch"])
def test_bad_numbers_are_usage_errors_with_their_reason(
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    command: str,
    option: str,
    value: str,
    message: str,
) -> None:
    out = tmp_path / "out.jsonl"
    if command == "eval":
        data = tmp_path / "d.jsonl"
        data.write_text(GSM8K.data_path.read_text(encoding="utf-8").splitlines()[0] + "\n")
        argv = ["eval", str(GSM8K.path), "--data", str(data), "--out", str(out)]
    else:
        argv = ["batch", str(requests(tmp_path / "in.jsonl")), str(out)]
    with pytest.raises(SystemExit) as exit_:
        cli_main([*argv, option, value])
    assert exit_.value.code == 2
    assert message in capsys.readouterr().err
    assert not out.exists()


def test_finished_rows_refuses_no_concurrency() -> None:
    """From Python too: no slot would ever open."""

    async def drain() -> None:
        async for _ in finished_rows(None, [1], 0):  # type: ignore[arg-type]
            pass

    with pytest.raises(ValueError, match="concurrency must be at least 1, got 0"):
        asyncio.run(drain())
