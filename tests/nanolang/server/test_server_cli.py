"""``nanolang serve`` as a process: binds loopback, takes the API key from the environment."""

from __future__ import annotations

import os

import httpx

from tests.serve_process import serve_process


def test_serve_command_with_key_from_environment(tiny_llama: str) -> None:
    env = {**os.environ, "NANOLANG_API_KEY": "env-key"}
    with serve_process(["--model", tiny_llama], env=env) as (_, url):
        assert httpx.get(f"{url}/v1/models", timeout=10).status_code == 401
        keyed = {"Authorization": "Bearer env-key"}
        models = httpx.get(f"{url}/v1/models", headers=keyed, timeout=10).json()
        assert models["data"][0]["id"] == os.path.basename(tiny_llama)
