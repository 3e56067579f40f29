"""``HTTP(url)``'s tokenizer from ``GET /v1/nano/tokenizer`` of a server on loopback, with the
requests that reach the server counted: a server that serves it is asked once; a server that
answers an error is asked once per backend (not once per row: every instance's transcript
asks for the tokenizer), and a transient failure is asked again only after a back-off."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from transformers import AutoTokenizer

import nanolang as nl
from nanolang.backends import HTTP, RemoteError, native_http
from nanolang.backends.retry import RetryPolicy
from nanolang.demo import model_dir
from nanolang.jobs import EvalJob, JobConfig, ResultLog, read_rows
from nanolang.server.native import saved_files
from tests.nanolang.loopback import Answer, loopback_server

ROUTE = "/v1/nano/tokenizer"
FAST = RetryPolicy(attempts=2, base_s=0.01, max_s=0.2)


def no_post(_body: bytes) -> Answer:
    return 500, "text/plain", b"no POST here"


def tokenizer_of(backend: HTTP) -> Any:
    return backend.tokenizer


@contextmanager
def tokenizer_route(status: int, body: bytes = b"") -> Iterator[tuple[str, list[str]]]:
    """A server answering every GET with ``status`` and ``body``; yields its URL and the
    paths asked for so far."""
    asked: list[str] = []

    def get(path: str) -> Answer:
        asked.append(path)
        return status, "application/json", body

    with loopback_server(no_post, get) as url:
        yield url, asked


def test_a_server_without_a_tokenizer_is_asked_once_for_a_whole_job(tmp_path: Path) -> None:
    data = tmp_path / "d.jsonl"
    data.write_text("".join(f'{{"id": {i}, "x": "{i}"}}\n' for i in range(20)))
    module = nl.compile("program main(x) {\n    return int(x)\n}\n").module
    with tokenizer_route(404, b'{"error": {"message": "no such route"}}') as (url, asked):
        backend = HTTP(url, retry=FAST)
        with ResultLog(tmp_path / "out.jsonl") as log:
            stats = EvalJob(module, backend, JobConfig("main"), log).run(read_rows(data))
        assert (stats.finished, stats.failed) == (20, 0)
        for _ in range(3):
            with pytest.raises(RemoteError, match="404: no such route"):
                tokenizer_of(backend)
        backend.close()
    assert asked == [ROUTE]


def test_a_transient_failure_is_asked_again_only_after_a_back_off() -> None:
    with tokenizer_route(503, b"busy") as (url, asked):
        backend = HTTP(url, retry=FAST)
        with pytest.raises(RemoteError, match="503: busy"):
            tokenizer_of(backend)
        assert len(asked) == FAST.attempts
        with pytest.raises(RemoteError, match="503: busy"):
            tokenizer_of(backend)
        assert len(asked) == FAST.attempts  # remembered: no request
        time.sleep(FAST.max_s * 1.5)
        with pytest.raises(RemoteError, match="503: busy"):
            tokenizer_of(backend)
        assert len(asked) == 2 * FAST.attempts  # the back-off is over: asked again
        backend.close()


def test_a_served_tokenizer_is_fetched_once_and_tokenizes_as_the_server() -> None:
    served = AutoTokenizer.from_pretrained(model_dir())
    body = json.dumps({"files": saved_files(served)}).encode()
    with tokenizer_route(200, body) as (url, asked):
        backend = HTTP(url)
        tokenizers = {id(backend.tokenizer) for _ in range(5)}
        backend.close()
    assert asked == [ROUTE] and len(tokenizers) == 1
    text = "I loved it, simply superb."
    assert backend.tokenizer.encode(text) == served.encode(text)


def test_close_during_a_fetch_neither_waits_for_it_nor_leaves_a_client_open(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``close()`` while another thread's fetch is in its back-off (the server answered 503,
    then serves the tokenizer): close returns at once, the fetch finishes, and every client the
    fetch opened is closed (before, the retry opened a new client after close, left open)."""
    served = AutoTokenizer.from_pretrained(model_dir())
    body = json.dumps({"files": saved_files(served)}).encode()
    asked = threading.Event()
    answers = iter([(503, "text/plain", b"busy")])

    def get(_path: str) -> Answer:
        asked.set()
        return next(answers, (200, "application/json", body))

    opened: list[httpx.Client] = []

    class Client(httpx.Client):
        def __init__(self, *args: Any, **kwargs: Any) -> None:
            super().__init__(*args, **kwargs)
            opened.append(self)

    monkeypatch.setattr(native_http.httpx, "Client", Client)
    with loopback_server(no_post, get) as url:
        backend = HTTP(url, retry=RetryPolicy(attempts=2, base_s=1.0, max_s=1.0))
        fetched: list[Any] = []
        fetch = threading.Thread(target=lambda: fetched.append(tokenizer_of(backend)))
        fetch.start()
        assert asked.wait(10)
        time.sleep(0.1)  # the 503 answered: the fetch sleeps 0.5-1 s before its retry
        start = time.monotonic()
        backend.close()
        assert time.monotonic() - start < 0.3  # not held up by the fetch in flight
        fetch.join(10)
    assert fetched and fetched[0].encode("superb") == served.encode("superb")
    assert opened and all(c.is_closed for c in opened)
