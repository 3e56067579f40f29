"""A real ``nanolang eval`` process on the demo model, killed with SIGKILL mid-run and rerun:
every row ends up in the results exactly once, and rows finished before the kill are kept as
written (not recomputed)."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from nanolang.demo.suite import REPO, entry

ROWS = 12


def complete_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    data = path.read_text(encoding="utf-8")
    return data.splitlines()[: data.count("\n")]


def test_killed_job_resumes_with_every_row_exactly_once(tmp_path: Path) -> None:
    gsm8k = entry("gsm8k")
    data = tmp_path / "data.jsonl"
    data.write_text(
        "\n".join(gsm8k.data_path.read_text(encoding="utf-8").splitlines()[:ROWS]) + "\n"
    )
    out = tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "nanolang", "eval", str(gsm8k.path), "--data", str(data)]
    cmd += ["--out", str(out), "--concurrency", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(complete_lines(out)) < 3:
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "no rows were written in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL
    kept = complete_lines(out)
    assert 3 <= len(kept) < ROWS
    with out.open("a", encoding="utf-8") as f:  # as if the kill had cut a write short
        f.write('{"id": "gsm8k-11", "outp')

    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    lines = complete_lines(out)
    assert out.read_text(encoding="utf-8").endswith("\n")
    ids = [json.loads(line)["id"] for line in lines]
    assert sorted(ids) == sorted(f"gsm8k-{i}" for i in range(ROWS))
    assert lines[: len(kept)] == kept
    assert f"{ROWS} / {ROWS}" in rerun.stdout
    assert f"{ROWS - len(kept)} / 0" in rerun.stdout  # this run: only the missing rows
