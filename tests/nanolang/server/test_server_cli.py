"""``nanolang serve`` as a process: binds loopback, takes the API key from the environment."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time

import httpx


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_serve_command_with_key_from_environment(tiny_llama: str) -> None:
    port = free_port()
    env = {**os.environ, "NANOLANG_API_KEY": "env-key"}
    command = [
        sys.executable,
        "-m",
        "nanolang",
        "serve",
        "--model",
        tiny_llama,
        "--port",
        str(port),
    ]
    proc = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            assert proc.poll() is None, proc.stdout.read().decode() if proc.stdout else ""
            try:
                if httpx.get(f"{url}/health", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            assert time.monotonic() < deadline, "nanolang serve did not come up"
            time.sleep(0.2)
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
        keyed = {"Authorization": "Bearer env-key"}
        models = httpx.get(f"{url}/v1/models", headers=keyed, timeout=10).json()
        assert models["data"][0]["id"] == os.path.basename(tiny_llama)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=10)
