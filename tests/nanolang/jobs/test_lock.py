"""One job per results file: a second ``nanolang eval`` / ``batch`` on a results file that a
running job holds stops before it starts (two used to append the same rows twice)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo.suite import REPO, entry
from nanolang.jobs import load_results
from nanolang.jobs.lock import JobLock, ResultsInUse

HOLD = """
import sys
from pathlib import Path
from nanolang.jobs.lock import JobLock
with JobLock(Path(sys.argv[1])):
    print("held", flush=True)
    sys.stdin.read()
"""


def test_the_lock_is_exclusive_names_its_holder_and_goes_with_it(tmp_path: Path) -> None:
    out = tmp_path / "sub" / "out.jsonl"
    with JobLock(out) as held:
        assert held.lock_path.exists()
        with pytest.raises(ResultsInUse, match=r"out\.jsonl is being written by another job"):
            JobLock(out).__enter__()
    assert not held.lock_path.exists()
    with JobLock(out):  # free again
        pass


def test_a_second_job_on_a_held_results_file_stops_before_it_starts(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = tmp_path / "out.jsonl"
    src = tmp_path / "in.jsonl"
    body = {"model": "demo", "prompt": "Number 1:", "max_tokens": 2, "seed": 1}
    line = {"custom_id": "r0", "method": "POST", "url": "/v1/completions", "body": body}
    src.write_text(json.dumps(line) + "\n", encoding="utf-8")
    data = tmp_path / "data.jsonl"
    data.write_text(entry("gsm8k").data_path.read_text(encoding="utf-8").splitlines()[0] + "\n")
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(out)],
        cwd=REPO,
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        commands = [
            ["batch", str(src), str(out), "--model-name", "demo", "--quiet"],
            ["eval", str(entry("gsm8k").path), "--data", str(data), "--out", str(out), "--quiet"],
        ]
        for command in commands:
            assert cli_main(command) == 1
            err = capsys.readouterr().err
            assert f"being written by another job (pid {holder.pid})" in err, err
            assert not out.exists()  # nothing ran, nothing was written
    finally:
        holder.communicate("", timeout=30)
    assert cli_main(["batch", str(src), str(out), "--model-name", "demo", "--quiet"]) == 0
    assert [line["custom_id"] for line in load_results(out)] == ["r0"]
    assert not out.with_name("out.jsonl.lock").exists()
