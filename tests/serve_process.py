"""``nanolang serve`` as a child process on a free loopback port, for tests."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def serve_process(
    args: list[str], *, env: Mapping[str, str] | None = None, start_s: float = 90
) -> Iterator[tuple[subprocess.Popen[bytes], str]]:
    """Start ``nanolang serve ARGS --port P``, wait until ``/health`` answers, yield the process
    and its URL; on exit SIGTERM it (uvicorn shuts down, the engine with it) and wait, killing
    it only if it hangs."""
    port = free_port()
    command = [sys.executable, "-m", "nanolang", "serve", *args, "--port", str(port)]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        _wait_healthy(proc, url, start_s, " ".join(["nanolang serve", *args]))
        yield proc, url
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)


def _wait_healthy(proc: subprocess.Popen[bytes], url: str, start_s: float, what: str) -> None:
    deadline = time.monotonic() + start_s
    while True:
        assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
        try:
            if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                return
        except httpx.TransportError:
            pass
        assert time.monotonic() < deadline, f"{what} did not come up in {start_s:.0f} s"
        time.sleep(0.2)
