"""A remote backend that fails: transient errors are retried with back-off, a dead server
gives failed rows with their error and a summary (never a traceback), and a server that comes
up during the back-off serves the job."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx
import pytest
import uvicorn

import nanolang as nl
from nanolang.backends import HTTP, RemoteError
from nanolang.backends.retry import Retrier, RetryPolicy, TransientError
from nanolang.cli import main as cli_main
from nanolang.demo import model_dir
from nanolang.demo.suite import entry
from nanolang.jobs import EvalJob, JobConfig, ResultLog, load_results, read_rows
from nanolang.server import ServerConfig, create_app

FAST = RetryPolicy(attempts=3, base_s=0.01, max_s=0.02)


def test_retrier_retries_transient_failures_then_succeeds() -> None:
    calls = []

    async def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise httpx.ConnectError("refused")
        return "ok"

    retrier = Retrier(FAST, "srv")
    assert asyncio.run(retrier.run(flaky)) == "ok"
    assert len(calls) == 3 and not retrier.down


def test_retrier_gives_up_marks_the_server_down_and_then_fails_fast() -> None:
    calls = []

    async def refused() -> str:
        calls.append(1)
        raise httpx.ConnectError("refused")

    retrier = Retrier(FAST, "srv")
    with pytest.raises(TransientError, match=r"srv: ConnectError: refused \(after 3 attempts\)"):
        asyncio.run(retrier.run(refused))
    assert retrier.down and len(calls) == 3
    with pytest.raises(TransientError, match="after 1 attempt"):
        asyncio.run(retrier.run(refused))
    assert len(calls) == 4


def test_statuses_other_than_transient_ones_are_not_retried() -> None:
    calls = []

    async def bad_request() -> str:
        calls.append(1)
        raise ValueError("400")

    with pytest.raises(ValueError):
        asyncio.run(Retrier(FAST, "srv").run(bad_request))
    assert len(calls) == 1
    assert RetryPolicy(base_s=1, max_s=4).delay(5) <= 4


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_dead_server_gives_failed_rows_and_a_summary_without_traceback(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program = entry("gsm8k").path
    data = tmp_path / "d.jsonl"
    data.write_text(
        "".join(f'{{"id": {i}, "question": "q{i}", "expected": {i}}}\n' for i in range(5))
    )
    out, report = tmp_path / "out.jsonl", tmp_path / "report.html"
    url = f"http://127.0.0.1:{closed_port()}"
    argv = ["eval", str(program), "--data", str(data), "--out", str(out), "--server", url]
    status = cli_main([*argv, "--quiet", "--report", str(report)])
    captured = capsys.readouterr()
    assert status == 1
    assert "Traceback" not in captured.err + captured.out
    lines = load_results(out)
    assert sorted(line["id"] for line in lines) == ["0", "1", "2", "3", "4"]
    assert all("Connection refused" in line["error"] for line in lines)
    assert "5 / 5" in captured.out and "errors" in captured.out
    assert "error: all 5 rows of this run failed" in captured.err
    assert "<svg" in report.read_text()


@contextmanager
def server_on(sock: socket.socket, delay_s: float) -> Iterator[None]:
    """Serve the demo model on ``sock`` (bound, not yet listening) after ``delay_s``."""
    server = uvicorn.Server(uvicorn.Config(create_app(ServerConfig(model=str(model_dir()))),
                                           log_level="warning"))  # fmt: skip

    def later() -> None:
        time.sleep(delay_s)
        server.run(sockets=[sock])

    thread = threading.Thread(target=later, daemon=True)
    thread.start()
    try:
        yield
    finally:
        server.should_exit = True
        thread.join(timeout=30)


def test_a_server_that_comes_up_during_the_back_off_serves_every_row(tmp_path: Path) -> None:
    sock = socket.socket()
    sock.bind(("127.0.0.1", 0))  # bound but not listening: connections are refused
    url = f"http://127.0.0.1:{sock.getsockname()[1]}"
    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"id": {i}, "x": "{i}"}}\n' for i in range(3)))
    module = nl.compile('program main(x) {\n    "{x}"\n    gen y(max_tokens = 2)\n'
                        "    return y\n}\n").module  # fmt: skip
    backend = HTTP(url, retry=RetryPolicy(attempts=30, base_s=0.2, max_s=0.5))
    with server_on(sock, delay_s=1.0), ResultLog(tmp_path / "out.jsonl") as log:
        stats = EvalJob(module, backend, JobConfig("main"), log).run(read_rows(data))
    sock.close()
    assert (stats.finished, stats.failed) == (3, 0)


def test_remote_error_is_a_backend_error() -> None:
    from nanolang.backends.base import BackendError

    assert issubclass(RemoteError, BackendError)
