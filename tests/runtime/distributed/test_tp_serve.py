"""``nanolang serve --tp 2`` as a process: answers like one process, and its workers end with it."""

from __future__ import annotations

import time
from pathlib import Path

import httpx
import pytest

from runtime import LLM, SamplingParams
from tests.serve_process import serve_process


@pytest.mark.slow
def test_serve_with_two_ranks_answers_and_stops_its_workers(tiny_llama: str) -> None:
    with serve_process(["--model", tiny_llama, "--tp", "2"], start_s=120) as (proc, url):
        workers = _children(proc.pid)
        assert len(workers) == 2
        body = {"model": Path(tiny_llama).name, "prompt": "The quick brown fox", "max_tokens": 6,
                "temperature": 0}  # fmt: skip
        reply = httpx.post(f"{url}/v1/completions", json=body, timeout=60)
        assert reply.status_code == 200, reply.text
        got = reply.json()
        want = LLM(tiny_llama, dtype="float32", device="cpu").generate(
            "The quick brown fox", SamplingParams(max_tokens=6, temperature=0)
        )[0]
        assert got["choices"][0]["text"] == want.text
    # serve_process sent SIGTERM: uvicorn shut down, and the engine's workers with it
    deadline = time.monotonic() + 30
    while any(_alive(pid) for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not any(_alive(pid) for pid in workers)


def _status(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return ""


def _alive(pid: int) -> bool:
    """Running (a zombie waiting to be reaped runs nothing)."""
    status = _status(pid)
    return bool(status) and "State:\tZ" not in status


def _children(parent: int) -> set[int]:
    """Live children of ``parent`` but multiprocessing's resource tracker."""
    out = set()
    for path in Path("/proc").glob("[0-9]*"):
        status = _status(int(path.name))
        if f"\nPPid:\t{parent}\n" in status and _alive(int(path.name)):
            try:
                if b"resource_tracker" not in (path / "cmdline").read_bytes():
                    out.add(int(path.name))
            except OSError:
                continue
    return out
