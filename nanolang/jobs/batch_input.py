"""OpenAI batch input files: one request per line,
``{"custom_id": ..., "method": "POST", "url": "/v1/chat/completions", "body": {...}}``.

A line that is not a JSON object, has no ``custom_id`` or repeats one is an error for the whole
file (with its line number): its result could not be named. A line with another method or url,
or a body that is not an object, is a ``problem`` of that row only: it gets an error line in the
output and the other rows run.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.jobs.fingerprint import Fingerprint, digest
from nanolang.jobs.row_file import DatasetError, StreamedRows

URLS = ("/v1/chat/completions", "/v1/completions")
PREFIX_CHARS = 256  # how much of a completion prompt decides its prefix group


@dataclass(frozen=True)
class BatchRow:
    """One request line: ``custom_id``, 0-based ``line``, and what to send (or its problem)."""

    custom_id: str
    line: int
    method: str
    url: str
    body: dict[str, Any]
    problem: str | None = None

    @property
    def fingerprint(self) -> Fingerprint:
        return {"request": digest({"method": self.method, "url": self.url, "body": self.body})}

    @property
    def group(self) -> str:
        """Requests likely to share a prompt prefix get the same key: the endpoint, the model
        and every chat message but the last (system prompt, few-shot turns), or a completion
        prompt's first ``PREFIX_CHARS`` characters."""
        messages = self.body.get("messages")
        if isinstance(messages, list) and messages:
            head: Any = messages[:-1]
        else:
            prompt = self.body.get("prompt")
            head = prompt[:PREFIX_CHARS] if isinstance(prompt, str) else None
        return digest({"url": self.url, "model": self.body.get("model"), "head": head})


def row_problem(obj: dict[str, Any]) -> str | None:
    if obj.get("method", "POST") != "POST":
        return f"method must be POST, got {obj.get('method')!r}"
    if obj.get("url") not in URLS:
        return f"url must be one of {', '.join(URLS)}, got {obj.get('url')!r}"
    if not isinstance(obj.get("body"), dict):
        return "body must be a JSON object"
    if obj["body"].get("stream"):
        return "stream is not supported in a batch file"
    return None


def parse_request(path: Path, line: int, obj: Any) -> BatchRow:
    if not isinstance(obj, dict):
        raise DatasetError(f"{path}:{line + 1}: a request must be a JSON object")
    custom_id = obj.get("custom_id")
    if not isinstance(custom_id, str) or not custom_id:
        raise DatasetError(f"{path}:{line + 1}: custom_id must be a non-empty string")
    body = obj.get("body")
    return BatchRow(
        custom_id=custom_id,
        line=line,
        method=str(obj.get("method", "POST")),
        url=str(obj.get("url", "")),
        body=body if isinstance(body, dict) else {},
        problem=row_problem(obj),
    )


@dataclass(frozen=True, slots=True)
class RequestFacts:
    """What a batch job keeps of each request from the one scan of its file (``RowRef.kept``):
    its fingerprint (resuming), prefix-group key (run order, ``--shard``, ``--ray`` chunks) and
    url (the summary's endpoints). Keys and urls repeat across requests and are shared."""

    fingerprint: Fingerprint
    group: str
    url: str


def request_facts(row: BatchRow) -> RequestFacts:
    return RequestFacts(row.fingerprint, sys.intern(row.group), sys.intern(row.url))


def request_id(row: BatchRow) -> str:
    return row.custom_id


def read_requests(path: Path) -> StreamedRows[BatchRow]:
    """The request lines of ``path`` (blank lines skipped; they still count as lines), checked
    in one pass that keeps each request's ``RequestFacts`` in its ``RowRef.kept``, and then read
    back from the file as they are used (``row_file.StreamedRows``: memory holds a little per
    request, never the file)."""
    return StreamedRows.of_file(path, parse_request, request_id, "custom_id", request_facts)
