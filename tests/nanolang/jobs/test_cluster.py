"""``--ray`` on a real local Ray cluster (started here, 2 CPUs: 2 replicas of the demo model).

A separate ``nanolang`` process joins the cluster as its driver and runs an eval, then a batch
file; mid-job the test SIGKILLs one replica's process. Every row must appear exactly once, with
the same results as a one-process run for the same seed. One cluster serves the module."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo.suite import REPO, entry
from nanolang.jobs import load_results

ray = pytest.importorskip("ray")

ROWS = 24


@pytest.fixture(scope="module")
def cluster() -> Iterator[str]:
    context = ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False,
                       namespace="nanolang-tests")  # fmt: skip
    try:
        yield context.address_info["gcs_address"]
    finally:
        ray.shutdown()


def complete_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    data = path.read_text(encoding="utf-8")
    return data.splitlines()[: data.count("\n")]


def kill_a_replica(driver: subprocess.Popen[str]) -> int:
    """SIGKILL the process of one of ``driver``'s replicas; its pid."""
    prefix = f"nanolang-replica-{driver.pid}-"
    names = [a["name"] for a in ray.util.list_named_actors(all_namespaces=True)
             if a["name"].startswith(prefix)]  # fmt: skip
    assert len(names) == 2, names
    replica = ray.get_actor(sorted(names)[0], namespace="nanolang")
    pid = int(ray.get(replica.pid.remote(), timeout=60))
    os.kill(pid, signal.SIGKILL)
    return pid


def run_with_a_kill(argv: list[str], out: Path, key: str) -> tuple[list[str], str]:
    """Run ``nanolang ARGV`` as its own process; kill a replica after 2 lines; the ids."""
    cmd = [sys.executable, "-m", "nanolang", *argv, "--quiet"]
    driver = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True)  # fmt: skip
    deadline = time.monotonic() + 240
    while len(complete_lines(out)) < 2:
        assert driver.poll() is None, driver.communicate()
        assert time.monotonic() < deadline, "no rows were written in time"
        time.sleep(0.05)
    written_before_kill = len(complete_lines(out))
    kill_a_replica(driver)
    stdout, stderr = driver.communicate(timeout=300)
    assert driver.returncode == 0, stderr
    assert written_before_kill < ROWS, "the job ended before the kill"
    assert "re-queued" in stderr, stderr
    return [json.loads(line)[key] for line in complete_lines(out)], stdout


def test_eval_on_ray_survives_a_killed_replica_with_one_process_results(
    cluster: str, tmp_path: Path
) -> None:
    gsm8k = entry("gsm8k")
    data = tmp_path / "data.jsonl"
    data.write_text("\n".join(gsm8k.data_path.read_text().splitlines()[:ROWS]) + "\n")
    out, alone = tmp_path / "ray.jsonl", tmp_path / "alone.jsonl"
    argv = ["eval", str(gsm8k.path), "--data", str(data), "--out", str(out), "--seed", "3"]
    ids, stdout = run_with_a_kill(
        [*argv, "--ray", cluster, "--chunk-rows", "2", "--concurrency", "2"], out, "id"
    )
    assert sorted(ids) == sorted(f"gsm8k-{i}" for i in range(ROWS))  # each exactly once
    assert f"{ROWS} / {ROWS}" in stdout
    one = ["eval", str(gsm8k.path), "--data", str(data), "--out", str(alone), "--seed", "3"]
    assert cli_main([*one, "--quiet"]) == 0

    def results(path: Path) -> dict[str, Any]:
        keep = ("output", "error", "completion_tokens", "prompt_tokens", "fingerprint")
        return {r["id"]: {k: r[k] for k in keep} for r in load_results(path)}

    assert results(out) == results(alone)


def test_batch_on_ray_survives_a_killed_replica_with_one_process_results(
    cluster: str, tmp_path: Path
) -> None:
    src, out, alone = tmp_path / "in.jsonl", tmp_path / "ray.jsonl", tmp_path / "alone.jsonl"
    system = {"role": "system", "content": "Answer with a number."}
    requests = [
        {"custom_id": f"q{i}", "method": "POST", "url": "/v1/chat/completions",
         "body": {"model": "demo", "max_tokens": 16, "seed": i,
                  "messages": [system, {"role": "user", "content": f"What is {i} + {i}?"}]}}
        for i in range(ROWS)
    ]  # fmt: skip
    src.write_text("".join(json.dumps(r) + "\n" for r in requests))
    argv = ["batch", str(src), str(out), "--model-name", "demo", "--ray", cluster]
    ids, _ = run_with_a_kill([*argv, "--chunk-rows", "2", "--concurrency", "2"], out, "custom_id")
    assert sorted(ids) == sorted(r["custom_id"] for r in requests)
    assert cli_main(["batch", str(src), str(alone), "--model-name", "demo", "--quiet"]) == 0

    def answers(path: Path) -> dict[str, Any]:
        """Status, choices and token counts (cached prompt tokens differ: other caches)."""
        out = {}
        for line in load_results(path):
            usage = dict(line["response"]["body"]["usage"])
            usage.pop("prompt_tokens_details", None)
            out[line["custom_id"]] = (line["response"]["status_code"],
                                      line["response"]["body"]["choices"], usage)  # fmt: skip
        return out

    assert answers(out) == answers(alone)
    assert {status for status, _, _ in answers(out).values()} == {200}
