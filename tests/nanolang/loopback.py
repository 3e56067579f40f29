"""Test helpers shared by the job and backend tests: a scripted HTTP server on loopback, and the
peak memory a piece of work holds (``tracemalloc``)."""

from __future__ import annotations

import threading
import tracemalloc
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

# what a POST's handler answers: the status, the content type and the body
Answer = tuple[int, str, bytes]


@contextmanager
def loopback_server(
    answer: Callable[[bytes], Answer], get: Callable[[str], Answer] | None = None
) -> Iterator[str]:
    """A server on loopback answering every POST with ``answer(request_body)`` and, with
    ``get``, every GET with ``get(path)`` (without it a GET is a 501); yields its base URL and
    stops it on exit."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            request = self.rfile.read(int(self.headers["Content-Length"]))
            self.answer(*answer(request))

        def do_GET(self) -> None:
            if get is None:
                self.send_error(501)
                return
            self.answer(*get(self.path))

        def answer(self, status: int, content_type: str, body: bytes) -> None:
            self.send_response(status)
            self.send_header("Content-Type", content_type)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def peak_bytes(work: Callable[[], Any]) -> tuple[Any, int]:
    """``work()``'s value and the most memory Python held while it ran, over what it held
    before."""
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        base = tracemalloc.get_traced_memory()[0]
        value = work()
        return value, tracemalloc.get_traced_memory()[1] - base
    finally:
        tracemalloc.stop()
