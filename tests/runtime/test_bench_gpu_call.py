"""bench/gpu_call.sh, the GPU session's named device calls: every name has its step, every test
file and script it names exists, and a wrong name is refused before anything runs."""

from __future__ import annotations

import re
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
SCRIPT = REPO / "bench" / "gpu_call.sh"


def _text() -> str:
    return SCRIPT.read_text()


def test_the_script_parses_and_refuses_an_unknown_call(tmp_path: Path) -> None:
    assert subprocess.run(["bash", "-n", str(SCRIPT)], check=False).returncode == 0
    for argv in (["bogus"], []):
        done = subprocess.run(["bash", str(SCRIPT), *argv], cwd=REPO, capture_output=True,
                              text=True, env={"OUT": str(tmp_path), "PATH": "/usr/bin:/bin"},
                              check=False)  # fmt: skip
        assert done.returncode == 2 and "NAME one of: tests " in done.stderr
        assert list(tmp_path.iterdir()) == []  # nothing ran


def test_every_call_has_its_step() -> None:
    text = _text()
    found = re.search(r'^calls="([^"]+)"', text, re.MULTILINE)
    assert found is not None
    names = set(found.group(1).split())
    branches = set()
    for pattern in re.findall(r"^  ([\w|-]+)\)", text, re.MULTILINE):
        branches |= set(pattern.split("|"))
    assert names == branches


def test_every_file_it_names_exists() -> None:
    paths = set(re.findall(r"(?:tests|bench)/[\w/]+\.(?:py|sh)", _text()))
    assert "tests/kernels/test_cublaslt_backend.py" in paths and "bench/env_ab.py" in paths
    missing = sorted(p for p in paths if not (REPO / p).exists())
    assert missing == []
