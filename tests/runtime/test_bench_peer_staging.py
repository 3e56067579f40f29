"""bench/peer_staging.sh: `hide` moves the folders the peers' staging calls do not need out of
the tree and `restore` puts them back, byte for byte; neither overwrites anything, and both say
why they refuse."""

from __future__ import annotations

import subprocess
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[2] / "bench" / "peer_staging.sh"
PATHS = ("bench/results/a.json", "nanolang/demo/model/model.safetensors")


def _run(root: Path, hold: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {"HOLD": str(hold), "PATH": "/usr/bin:/bin"}
    return subprocess.run(["bash", str(SCRIPT), *argv], cwd=root, capture_output=True, text=True,
                          env=env, check=False)  # fmt: skip


def test_hide_then_restore_round_trips(tmp_path: Path) -> None:
    root, hold = tmp_path / "repo", tmp_path / "hold"
    for i, rel in enumerate(PATHS):
        (root / rel).parent.mkdir(parents=True)
        (root / rel).write_bytes(bytes([i]) * 10)
    (root / "bench" / "gpu_call.sh").write_text("kept\n")
    done = _run(root, hold, "hide")
    assert done.returncode == 0, done.stderr
    assert not (root / "bench" / "results").exists() and not (root / "nanolang/demo/model").exists()
    assert (root / "bench" / "gpu_call.sh").read_text() == "kept\n"  # only the two folders move
    again = _run(root, hold, "hide")  # a second hide would overwrite the held copies
    assert again.returncode == 1 and "restore first" in again.stderr
    done = _run(root, hold, "restore")
    assert done.returncode == 0, done.stderr
    for i, rel in enumerate(PATHS):
        assert (root / rel).read_bytes() == bytes([i]) * 10
    again = _run(root, hold, "restore")
    assert again.returncode == 1 and "nothing to restore over" in again.stderr


def test_refusals(tmp_path: Path) -> None:
    done = _run(tmp_path, tmp_path / "hold", "hide")  # not a repository root
    assert done.returncode == 1 and "run from the repository root" in done.stderr
    done = _run(tmp_path, tmp_path / "hold", "restore")  # nothing was hidden
    assert done.returncode == 1 and "was it hidden?" in done.stderr
    done = _run(tmp_path, tmp_path / "hold", "bogus")
    assert done.returncode == 2 and "usage:" in done.stderr
