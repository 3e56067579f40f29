"""``--ray`` on a real local Ray cluster (started here, 2 CPUs: 2 replicas of the demo model).

A separate ``nanolang`` process joins the cluster as its driver and runs an eval, then a batch
file; mid-job the test SIGKILLs one replica's process. Every row must appear exactly once, with
the same results as a one-process run for the same seed. Then this process is the driver of an
eval over 20 MB of rows: it reads a chunk's rows only when a replica takes it (a bounded number
of rows in flight), each row once. One cluster serves the module."""

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
from nanolang.jobs.cluster import FEEDERS_PER_REPLICA
from nanolang.jobs.runner import JobWriter
from tests.nanolang.jobs.test_input_passes import counted_parses
from tests.nanolang.jobs.test_streamed_rows import TO_INT, big_dataset

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


def test_the_driver_reads_rows_a_chunk_at_a_time_as_replicas_take_them(
    cluster: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process drives an eval of 2,000 rows of 10 KB on the cluster, a quarter of them
    done by an earlier run: a row is read from the file when its chunk goes to a replica, so
    at most replicas x 2 chunks of rows are read and not yet written at any time (the driver
    read every pending row before the first ran), the finished rows are never read, and every
    row ends up in the results once."""
    program, out = tmp_path / "to_int.nano", tmp_path / "out.jsonl"
    program.write_text(TO_INT, encoding="utf-8")
    data = big_dataset(tmp_path / "d.jsonl")
    lines = len(data.read_bytes().splitlines())
    argv = ["eval", str(program), "--data", str(data), "--out", str(out), "--quiet",
            "--group-by", "subject"]  # fmt: skip
    assert cli_main([*argv, "--shard", "0/4"]) == 0  # in this process, without Ray
    earlier = {int(line["id"]) for line in load_results(out)}
    replicas, chunk_rows = 2, 8
    parsed = written = 0
    in_flight: list[int] = []  # at each read of a row: rows read and not yet written

    def write(self: JobWriter, item: Any, original: Any = JobWriter.write) -> None:
        nonlocal written
        written += 1
        original(self, item)

    def parse() -> None:
        nonlocal parsed
        parsed += 1
        if parsed > lines:  # the scan parsed every line first; then a row read to run
            in_flight.append(parsed - lines - written)

    monkeypatch.setattr(JobWriter, "write", write)
    ray_argv = [*argv, "--ray", cluster, "--replicas", str(replicas),
                "--chunk-rows", str(chunk_rows), "--concurrency", "4"]  # fmt: skip
    with counted_parses(data, monkeypatch, parse) as counts:
        assert cli_main(ray_argv) == 0
    window = replicas * FEEDERS_PER_REPLICA * chunk_rows
    assert 0 < max(in_flight) <= window, (max(in_flight), window)
    assert len(in_flight) == lines - len(earlier)
    assert all(counts[i] == 1 for i in earlier)  # checked by the scan, never read again
    assert all(counts[i] == 2 for i in range(lines) if i not in earlier)  # and run once
    assert sorted(int(line["id"]) for line in load_results(out)) == list(range(lines))
