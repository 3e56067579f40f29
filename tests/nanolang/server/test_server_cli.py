"""``nanolang serve`` as a process: binds loopback, takes the API key from the environment."""

from __future__ import annotations

import os

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
