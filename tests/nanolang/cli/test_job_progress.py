"""What ``nanolang eval`` and ``nanolang batch`` show while they run is the rows' own progress:
the model loads before the progress bar's clock starts, so the bar's rate (and ETA) and the
summary's wall time and rate agree, and neither counts the load (a slow load, as a large
checkpoint's, is simulated by delaying the demo model's). Without a terminal, plain status
lines take the bar's place."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nanolang.backends.local import LocalBackend
from nanolang.cli import main as cli_main
from nanolang.demo.suite import REPO, entry
from nanolang.jobs import progress

LOAD_S = 2.0


@pytest.fixture()
def slow_load(monkeypatch: pytest.MonkeyPatch) -> None:
    load = LocalBackend.from_model

    def slowly(*args: Any, **kwargs: Any) -> LocalBackend:
        time.sleep(LOAD_S)
        return load(*args, **kwargs)

    monkeypatch.setattr(LocalBackend, "from_model", slowly)


def eval_job(tmp_path: Path) -> list[str]:
    gsm8k = entry("gsm8k")
    data = tmp_path / "data.jsonl"
    rows = gsm8k.data_path.read_text(encoding="utf-8").splitlines()[:4]
    data.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return ["eval", str(gsm8k.path), "--data", str(data), "--out", str(tmp_path / "out.jsonl")]


def batch_job(tmp_path: Path) -> list[str]:
    src = tmp_path / "in.jsonl"
    lines = [
        {
            "custom_id": f"r{i}",
            "method": "POST",
            "url": "/v1/completions",
            "body": {"model": "demo", "prompt": f"Question {i}:", "max_tokens": 16, "seed": i},
        }
        for i in range(4)
    ]
    src.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
    return ["batch", str(src), str(tmp_path / "out.jsonl"), "--model-name", "demo"]


@pytest.mark.parametrize("job", [eval_job, batch_job], ids=["eval", "batch"])
def test_progress_and_summary_count_the_rows_not_the_model_load(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], slow_load: None, job: Any
) -> None:
    assert cli_main([*job(tmp_path), "--quiet"]) == 0
    captured = capsys.readouterr()
    shown = [float(r) for r in re.findall(r"([\d.]+) tok/s; row ", captured.err)]
    assert len(shown) == 4, captured.err
    summary = re.search(r"([\d.]+)s \(([\d.]+) generated tok/s\)", captured.out)
    assert summary is not None, captured.out
    wall_s, rate = float(summary.group(1)), float(summary.group(2))
    assert wall_s < LOAD_S, captured.out  # the rows ran in well under the load's time here
    assert rate > 0 and 0.7 * rate <= shown[-1] <= 1.3 * rate, (shown, rate)


def test_without_a_terminal_progress_is_plain_status_lines(tmp_path: Path) -> None:
    """stderr to a pipe or log file (nohup, a batch system): the live bar cannot be drawn there
    and showed nothing until the job ended, then a line of bar glyphs; now a plain status line
    every LOG_EVERY_S seconds and after the last row, with no control characters."""
    cmd = [sys.executable, "-m", "nanolang", *eval_job(tmp_path)]
    done = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.strip().splitlines()
    assert re.fullmatch(
        r"gsm8k:main: 4/4 done, 0 failed, [\d.]+ tok/s; \d:\d\d:\d\d elapsed, ETA 0:00:00",
        lines[-1],
    ), done.stderr
    assert "\x1b" not in done.stderr and "━" not in done.stderr, done.stderr


def test_status_lines_come_every_log_every_s(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(progress, "LOG_EVERY_S", 1e-9)  # a line after every row
    assert cli_main(eval_job(tmp_path)) == 0
    shown = re.findall(r"gsm8k:main: (\d)/4 done", capsys.readouterr().err)
    assert shown == ["1", "2", "3", "4"], shown
