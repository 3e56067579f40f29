"""``nanolang serve`` as a process: binds loopback, takes the API key from the environment."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import threading
import time
from typing import Any

import httpx
import pytest

from tests.serve_process import serve_process


def test_serve_command_with_key_from_environment(tiny_llama: str) -> None:
    env = {**os.environ, "NANOLANG_API_KEY": "env-key"}
    with serve_process(["--model", tiny_llama], env=env) as (_, url):
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
        keyed = {"Authorization": "Bearer env-key"}
        models = httpx.get(f"{url}/v1/models", headers=keyed, timeout=10).json()
        assert models["data"][0]["id"] == os.path.basename(tiny_llama)


def test_serve_refuses_a_tensor_parallel_degree_below_one(
    capsys: pytest.CaptureFixture[str],
) -> None:
    from nanolang.cli.main import main

    for bad in ("0", "-2", "two"):
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--tp", bad])
        assert exit_info.value.code == 2
        assert "--tp" in capsys.readouterr().err
    for bad in ("-1", "soon"):
        with pytest.raises(SystemExit) as exit_info:
            main(["serve", "--shutdown-timeout", bad])
        assert exit_info.value.code == 2
        assert "argument --shutdown-timeout:" in capsys.readouterr().err


def test_serve_reports_a_degree_the_model_cannot_split(
    tiny_llama: str, capsys: pytest.CaptureFixture[str]
) -> None:
    from nanolang.cli.main import main

    # the tiny model's KV heads do not divide by 4: one line on stderr, exit 2, no traceback
    assert main(["serve", "--model", tiny_llama, "--tp", "4"]) == 2
    err = capsys.readouterr().err
    assert (
        err.startswith("error: tensor_parallel_size 4 does not divide") and "Traceback" not in err
    )


LONG = {"model": "llama", "prompt": "0 1 2 3", "max_tokens": 450, "ignore_eos": True}
SHUTTING_DOWN = {
    "message": "the server is shutting down; the request was cancelled",
    "type": "server_error",
    "param": None,
    "code": "server_shutting_down",
}


def requests_in_flight(url: str) -> tuple[dict[str, Any], list[threading.Thread]]:
    """A long stream and a long non-streamed request, running when this returns; what they
    got lands in the dict (``stream``: the last SSE data line; ``plain``: the response)."""
    got: dict[str, Any] = {}
    started = threading.Event()

    def stream() -> None:
        body = {**LONG, "stream": True}
        with httpx.stream("POST", f"{url}/v1/completions", json=body, timeout=60) as response:
            for line in response.iter_lines():
                started.set()
                got["stream"] = line.removeprefix("data: ") if line else got.get("stream")

    def plain() -> None:
        got["plain"] = httpx.post(f"{url}/v1/completions", json={**LONG, "n": 8}, timeout=60)

    threads = [threading.Thread(target=stream), threading.Thread(target=plain)]
    for thread in threads:
        thread.start()
    assert started.wait(30)
    deadline = time.monotonic() + 30
    while "requests_running 9.0" not in httpx.get(f"{url}/metrics", timeout=10).text:
        assert time.monotonic() < deadline
        time.sleep(0.02)
    return got, threads


def assert_ended_cleanly(proc: subprocess.Popen[bytes], got: dict[str, Any], port: int) -> None:
    """Both requests answered with the shutting-down error in OpenAI's shape, no traceback in
    the log, and the port free for the next server."""
    proc.wait(timeout=30)
    log = proc.stdout.read().decode() if proc.stdout else ""
    assert "Traceback" not in log and "never retrieved" not in log, log
    assert got["plain"].status_code == 503 and got["plain"].json() == {"error": SHUTTING_DOWN}
    assert json.loads(got["stream"]) == {"error": SHUTTING_DOWN}
    with socket.socket() as sock:  # as uvicorn binds it
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", port))


def test_sigterm_cancels_requests_in_flight_after_the_shutdown_timeout(tiny_llama: str) -> None:
    """SIGTERM with requests running: they have --shutdown-timeout to finish (uvicorn waited
    for them without limit), then end with a 503 in OpenAI's shape, one log line each (uvicorn
    logged a traceback per request and answered a plain-text 500)."""
    args = ["--model", tiny_llama, "--model-name", "llama", "--shutdown-timeout", "0.2"]
    with serve_process(args) as (proc, url):
        got, threads = requests_in_flight(url)
        proc.send_signal(signal.SIGTERM)
        for thread in threads:
            thread.join(timeout=30)
        assert_ended_cleanly(proc, got, int(url.rsplit(":", 1)[1]))


def test_a_second_ctrl_c_stops_at_once_without_tracebacks(tiny_llama: str) -> None:
    with serve_process(["--model", tiny_llama, "--model-name", "llama"]) as (proc, url):
        got, threads = requests_in_flight(url)
        proc.send_signal(signal.SIGINT)  # waits for the requests (up to 30 s) ...
        time.sleep(0.3)
        proc.send_signal(signal.SIGINT)  # ... unless forced
        for thread in threads:
            thread.join(timeout=30)
        assert_ended_cleanly(proc, got, int(url.rsplit(":", 1)[1]))


def test_a_port_in_use_is_one_line_before_the_model_loads(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """The port is taken first: uvicorn bound it only after the model had loaded (minutes for
    a large one), then logged the error and exited 3."""
    from nanolang.cli.main import main
    from nanolang.server import app

    def no_load(config: object) -> None:
        raise AssertionError("the model loaded before the port was checked")

    monkeypatch.setattr(app, "load_backend", no_load)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        assert main(["serve", "--port", str(port)]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot serve on 127.0.0.1:{port}: ") and "in use" in err
