"""``nanolang eval --server URL``: the same job against a live nanolang server (uvicorn on
loopback, serving the demo model) gives the same results as the in-process engine."""

from __future__ import annotations

from pathlib import Path

from nanolang.cli import main as cli_main
from nanolang.demo import model_dir
from nanolang.demo.suite import entry
from nanolang.jobs import load_results
from nanolang.server import ServerConfig
from tests.nanolang.server.live_server import live_server


def run_eval(data: Path, out: Path, *backend: str) -> list[dict]:
    item = entry("self_consistency")
    argv = ["eval", str(item.path), "--data", str(data), "--out", str(out), "--quiet"]
    assert cli_main([*argv, "--seed", "5", *backend]) == 0
    return sorted(load_results(out), key=lambda r: r["id"])


def test_eval_against_a_server_matches_the_local_engine(tmp_path: Path) -> None:
    item = entry("self_consistency")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(item.data_path.read_text().splitlines()[:4]) + "\n")
    local = run_eval(data, tmp_path / "local.jsonl")
    with live_server(ServerConfig(model=str(model_dir()), model_name="demo")) as server:
        remote = run_eval(data, tmp_path / "remote.jsonl", "--server", server.url)
    assert [r["error"] for r in remote] == [None] * 4
    assert [(r["id"], r["output"]) for r in remote] == [(r["id"], r["output"]) for r in local]
    assert [r["completion_tokens"] for r in remote] == [r["completion_tokens"] for r in local]
