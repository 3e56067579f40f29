"""``nanolang batch``: OpenAI batch files answered in process exactly as a live server answers
them, a SIGKILLed job that resumes to exactly-once output, fingerprints, and a dead server that
gives failed lines (then ``--retry-failed`` once it is back)."""

from __future__ import annotations

import json
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from nanolang.cli import main as cli_main
from nanolang.demo import model_dir
from nanolang.demo.suite import REPO
from nanolang.jobs import load_results
from nanolang.jobs.batch_input import read_requests
from nanolang.jobs.dataset import DatasetError
from nanolang.server import ServerConfig
from tests.nanolang.server.live_server import live_server

# random ids, timestamps, latency, and prefix-cache hits (they depend on what ran before)
VOLATILE = {"id", "created", "request_id", "latency_s", "prompt_tokens_details"}


def request(custom_id: str, url: str = "/v1/completions", **body: Any) -> dict[str, Any]:
    return {"custom_id": custom_id, "method": "POST", "url": url, "body": {"model": "demo", **body}}


def chat(custom_id: str, text: str, **body: Any) -> dict[str, Any]:
    messages = [{"role": "system", "content": "Answer briefly."}, {"role": "user", "content": text}]
    return request(custom_id, "/v1/chat/completions", messages=messages, **body)


MIXED = [
    chat("chat-1", "Capital of Portugal?", max_tokens=8, seed=1),
    chat("chat-2", "Capital of France?", max_tokens=8, temperature=0),
    request("cmpl-1", prompt="Review: a superb film. Sentiment:", max_tokens=4, temperature=0),
    request("cmpl-n", prompt="Count: 1 2 3", max_tokens=3, n=2, seed=3),
    request("bad-model", prompt="x", max_tokens=2, model="gpt-4"),
    request("bad-n", prompt="x", max_tokens=2, n=0),
    request("bad-messages", "/v1/chat/completions", messages=[], max_tokens=2),
    {"custom_id": "bad-url", "method": "POST", "url": "/v1/embeddings", "body": {"input": "x"}},
]


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def stable(value: Any) -> Any:
    """A line without what may differ between two runs of the same requests."""
    if isinstance(value, dict):
        return {k: stable(v) for k, v in value.items() if k not in VOLATILE}
    if isinstance(value, list):
        return [stable(v) for v in value]
    return value


def by_id(path: Path) -> dict[str, Any]:
    return {line["custom_id"]: line for line in load_results(path)}


def batch(*argv: str) -> int:
    return cli_main(["batch", *argv, "--quiet"])


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_in_process_batch_answers_exactly_as_a_live_server(tmp_path: Path) -> None:
    src = write(tmp_path / "in.jsonl", MIXED)
    local, remote = tmp_path / "local.jsonl", tmp_path / "remote.jsonl"
    assert batch(str(src), str(local), "--model-name", "demo") == 0
    with live_server(ServerConfig(model=str(model_dir()), model_name="demo")) as server:
        assert batch(str(src), str(remote), "--server", server.url) == 0
    mine, theirs = by_id(local), by_id(remote)
    assert sorted(mine) == sorted(r["custom_id"] for r in MIXED)
    assert {k: stable(v) for k, v in mine.items()} == {k: stable(v) for k, v in theirs.items()}
    status = {k: (v["response"] or {}).get("status_code") for k, v in mine.items()}
    ok = {"chat-1": 200, "chat-2": 200, "cmpl-1": 200, "cmpl-n": 200}
    bad = {"bad-model": 404, "bad-n": 400, "bad-messages": 400, "bad-url": None}
    assert status == {**ok, **bad}
    assert mine["bad-url"]["error"]["code"] == "invalid_request"
    assert len(mine["cmpl-n"]["response"]["body"]["choices"]) == 2
    assert mine["chat-1"]["response"]["body"]["object"] == "chat.completion"


def test_a_byte_order_mark_is_not_data_and_bad_bytes_name_their_line(tmp_path: Path) -> None:
    rows = [request(f"r{i}", prompt="x", max_tokens=1) for i in range(2)]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8-sig")
    assert [row.custom_id for row in read_requests(src)] == ["r0", "r1"]
    src.write_bytes(src.read_bytes()[3:] + '{"custom_id": "\u00e9"}\n'.encode("latin-1"))
    with pytest.raises(DatasetError, match=r"in\.jsonl:3: not UTF-8"):
        read_requests(src)


def test_bad_request_lines_name_their_file_and_line(tmp_path: Path) -> None:
    """A line that is not an object, has no custom_id or repeats one stops the job before it
    starts (its answer could not be named); the error names the file (it gave a bare line)."""
    ok = request("a", prompt="x", max_tokens=1)
    cases = [
        ([ok, [1]], r"in\.jsonl:2: a request must be a JSON object"),
        ([ok, {"method": "POST", "body": {}}], r"in\.jsonl:2: custom_id must be a non-empty"),
        ([ok, {**ok, "custom_id": 7}], r"in\.jsonl:2: custom_id must be a non-empty"),
        ([ok, ok], r"in\.jsonl:2: custom_id 'a' repeats \(first on line 1\)"),
    ]
    for lines, message in cases:
        src = tmp_path / "in.jsonl"
        src.write_text("".join(json.dumps(line) + "\n" for line in lines), encoding="utf-8")
        with pytest.raises(DatasetError, match=message):
            read_requests(src)


def test_resuming_with_another_input_file_is_an_error_until_restart(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [request(f"r{i}", prompt=f"Number {i}:", max_tokens=2, seed=i) for i in range(3)]
    src, out = write(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    assert batch(str(src), str(out), "--model-name", "demo") == 0
    before = out.read_bytes()
    rows[1]["body"]["max_tokens"] = 3
    write(src, rows)
    assert batch(str(src), str(out), "--model-name", "demo") == 1
    err = capsys.readouterr().err
    assert "other requests under the same custom_id (another input file?): 1 of 3" in err
    assert "--restart" in err and out.read_bytes() == before
    assert batch(str(src), str(out), "--model-name", "demo", "--restart") == 0
    assert sorted(by_id(out)) == ["r0", "r1", "r2"] and len(load_results(out)) == 3


def test_dead_server_gives_failed_lines_then_retry_failed_completes_them(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rows = [request(f"r{i}", prompt=f"Number {i}:", max_tokens=2, seed=i) for i in range(4)]
    src, out, report = (
        write(tmp_path / "in.jsonl", rows),
        tmp_path / "out.jsonl",
        tmp_path / "r.html",
    )
    dead = f"http://127.0.0.1:{closed_port()}"
    assert batch(str(src), str(out), "--server", dead, "--report", str(report)) == 1
    captured = capsys.readouterr()
    assert "Traceback" not in captured.out + captured.err
    assert "all 4 requests of this run failed" in captured.err and "4 / 4" in captured.out
    assert "4 rows failed; --retry-failed runs them again" in captured.err
    lines = by_id(out)
    assert sorted(lines) == ["r0", "r1", "r2", "r3"]
    assert {line["error"]["code"] for line in lines.values()} == {"server_unreachable"}
    assert all(line["response"] is None for line in lines.values())
    assert "/v1/completions" in report.read_text()
    with live_server(ServerConfig(model=str(model_dir()), model_name="demo")) as server:
        assert batch(str(src), str(out), "--server", server.url, "--retry-failed") == 0
    lines = by_id(out)
    assert len(load_results(out)) == 4
    assert {line["response"]["status_code"] for line in lines.values()} == {200}


def test_server_url_may_be_the_openai_base_url(tmp_path: Path) -> None:
    """``--server`` takes the server's root or its ``/v1`` base (as OpenAI clients write
    ``base_url``); the /v1 form made every request a 404."""
    rows = [request(f"r{i}", prompt=f"Number {i}:", max_tokens=2, seed=i) for i in range(2)]
    src = write(tmp_path / "in.jsonl", rows)
    with live_server(ServerConfig(model=str(model_dir()), model_name="demo")) as server:
        for k, url in enumerate((server.url, f"{server.url}/v1", f"{server.url}/v1/")):
            out = tmp_path / f"out{k}.jsonl"
            assert batch(str(src), str(out), "--server", url) == 0
            lines = by_id(out)
            assert {line["response"]["status_code"] for line in lines.values()} == {200}


def complete_lines(path: Path) -> list[str]:
    if not path.exists():
        return []
    data = path.read_text(encoding="utf-8")
    return data.splitlines()[: data.count("\n")]


def test_sigkilled_batch_resumes_to_exactly_once_output(tmp_path: Path) -> None:
    rows = [
        request(f"r{i}", prompt=f"Question {i}: how many?", max_tokens=24, seed=i, ignore_eos=True)
        for i in range(30)
    ]
    src, out, whole = (
        write(tmp_path / "in.jsonl", rows),
        tmp_path / "out.jsonl",
        tmp_path / "w.jsonl",
    )
    cmd = [sys.executable, "-m", "nanolang", "batch", str(src), str(out), "--model-name", "demo"]
    cmd += ["--concurrency", "1", "--quiet"]
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 180
    while len(complete_lines(out)) < 3:
        assert proc.poll() is None, "the job ended before it could be killed"
        assert time.monotonic() < deadline, "no lines were written in time"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=30)
    kept = complete_lines(out)
    assert 3 <= len(kept) < len(rows)
    with out.open("a", encoding="utf-8") as f:  # as if the kill had cut a write short
        f.write('{"id": "batch_req_x", "custom_id": "r29", "resp')
    rerun = subprocess.run(cmd, cwd=REPO, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    lines = complete_lines(out)
    assert lines[: len(kept)] == kept
    ids = [json.loads(line)["custom_id"] for line in lines]
    assert sorted(ids) == sorted(r["custom_id"] for r in rows)  # each exactly once
    assert batch(str(src), str(whole), "--model-name", "demo") == 0  # one uninterrupted run
    resumed = {k: stable(v) for k, v in by_id(out).items()}
    assert resumed == {k: stable(v) for k, v in by_id(whole).items()}


@pytest.mark.parametrize(
    ("stop", "status"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)], ids=["sigint", "sigterm"]
)
def test_ctrl_c_stops_cleanly_and_the_same_command_resumes(
    tmp_path: Path, stop: signal.Signals, status: int
) -> None:
    """SIGINT (Ctrl-C) or SIGTERM (a batch system's time limit, ``timeout``) mid-job: a one-line
    note of what is saved and how to resume, exit 128 + the signal, no traceback; every
    finished line kept, and the rerun completes each row exactly once. (SIGTERM's default
    action ended the process with no note, and a live bar's cursor left hidden.)"""
    rows = [
        request(f"r{i}", prompt=f"Question {i}: how many?", max_tokens=24, seed=i, ignore_eos=True)
        for i in range(12)
    ]
    src, out = write(tmp_path / "in.jsonl", rows), tmp_path / "out.jsonl"
    cmd = [sys.executable, "-m", "nanolang", "batch", str(src), str(out), "--model-name", "demo"]
    cmd += ["--concurrency", "1", "--quiet"]
    pipe = subprocess.PIPE
    proc = subprocess.Popen(cmd, cwd=REPO, stdout=pipe, stderr=pipe, text=True)
    deadline = time.monotonic() + 180
    while len(complete_lines(out)) < 3:
        assert proc.poll() is None, "the job ended before it could be interrupted"
        assert time.monotonic() < deadline, "no lines were written in time"
        time.sleep(0.02)
    proc.send_signal(stop)
    stdout, stderr = proc.communicate(timeout=60)
    assert proc.returncode == status, stderr
    assert "Traceback" not in stdout + stderr, stderr
    kept = complete_lines(out)
    assert 3 <= len(kept) < len(rows)
    note = stderr.strip().splitlines()[-1]
    assert note.startswith("interrupted:") and f"{len(kept)} of {len(rows)}" in note, note
    assert "same command" in note
    assert batch(str(src), str(out), "--model-name", "demo") == 0
    lines = complete_lines(out)
    assert lines[: len(kept)] == kept
    assert sorted(json.loads(line)["custom_id"] for line in lines) == sorted(
        r["custom_id"] for r in rows
    )
