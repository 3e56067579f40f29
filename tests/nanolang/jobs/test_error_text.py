"""A failed row's error: whole in its results line up to ``ERROR_CHARS`` (then its start and end
around a marker saying how much was cut; it was unbounded), whole in the ``--report`` HTML (it
showed the first line cut at 120 characters: the cause was lost), and its first line, short, on
the console (the summary table, a ``--quiet`` line)."""

from __future__ import annotations

import html
import json
from contextlib import AbstractContextManager
from pathlib import Path

import pytest

from nanolang.backends.retry import BODY_CHARS
from nanolang.cli import main as cli_main
from nanolang.jobs import load_results
from nanolang.jobs.error_text import ERROR_CHARS, HEAD_CHARS, error_head, kept_error
from tests.nanolang.loopback import loopback_server

TO_INT = "program main(x) {\n    return int(x)\n}\n"
MARKER = "characters cut here"


def test_kept_error_keeps_short_texts_whole_and_marks_a_cut() -> None:
    assert kept_error("short") == "short"
    exact = "e" * ERROR_CHARS
    assert kept_error(exact) == exact
    long = "START " + "m" * 50_000 + " the cause"
    kept = kept_error(long)
    assert kept.startswith("START ") and kept.endswith(" the cause")
    assert f"[... {len(long) - ERROR_CHARS:,} of the error's {len(long):,} {MARKER} ...]" in kept
    assert len(kept) < ERROR_CHARS + 100


def test_error_head_is_the_first_line_shortened() -> None:
    assert error_head("first\nsecond") == "first"
    head = error_head("x" * 500)
    assert len(head) == HEAD_CHARS and head.endswith("...")
    assert error_head("  \n") == "(empty error)"


def test_eval_keeps_whole_errors_in_results_and_report_and_short_ones_on_the_console(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    program, data = tmp_path / "to_int.nano", tmp_path / "d.jsonl"
    out, report = tmp_path / "out.jsonl", tmp_path / "r.html"
    program.write_text(TO_INT, encoding="utf-8")
    medium, huge = "m" * 3_000 + " medium end", "h" * 30_000 + " huge end"
    rows = [{"id": "medium", "x": medium}, {"id": "huge", "x": huge}, {"id": "ok", "x": "7"}]
    data.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    argv = ["eval", str(program), "--data", str(data), "--out", str(out), "--quiet"]
    assert cli_main([*argv, "--report", str(report)]) == 0
    errors = {line["id"]: line["error"] for line in load_results(out)}
    assert errors["ok"] is None
    assert f"int() cannot parse '{medium}' as an integer" in errors["medium"]  # whole
    assert MARKER not in errors["medium"]
    assert MARKER in errors["huge"] and len(errors["huge"]) < ERROR_CHARS + 100
    assert errors["huge"].endswith("^")  # the end (the caret under the call) is kept
    assert "int() cannot parse 'hhhh" in errors["huge"]
    page = report.read_text(encoding="utf-8")
    assert html.escape(errors["medium"]) in page  # the report: whole, not the first line cut
    assert html.escape(errors["huge"]) in page
    captured = capsys.readouterr()
    logged = [line for line in captured.err.splitlines() if "row medium failed" in line]
    assert len(logged) == 1 and len(logged[0]) < 2 * HEAD_CHARS + 100, logged
    assert "runtime error: int() cannot parse 'm" in logged[0] and logged[0].endswith("...")
    assert medium not in captured.out + captured.err  # the console has the short form only


def test_batch_error_messages_are_kept_whole_up_to_the_bound(tmp_path: Path) -> None:
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        {"custom_id": "medium", "method": "POST", "url": "/v1/" + "m" * 3_000, "body": {}},
        {"custom_id": "huge", "method": "POST", "url": "/v1/" + "h" * 30_000, "body": {}},
    ]  # answered at once with an error line naming the url: no model call
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    assert cli_main(["batch", str(src), str(out), "--model-name", "demo", "--quiet"]) == 1
    message = {line["custom_id"]: line["error"]["message"] for line in load_results(out)}
    assert "m" * 3_000 in message["medium"] and MARKER not in message["medium"]
    assert MARKER in message["huge"] and len(message["huge"]) < ERROR_CHARS + 100


def failing_server(body: bytes) -> AbstractContextManager[str]:
    """A server on loopback that answers every request with a 503 and ``body``."""
    return loopback_server(lambda _request: (503, "text/plain", body))


def test_a_servers_error_body_reaches_the_results_line(tmp_path: Path) -> None:
    """A 503's body was cut at 200 characters, without a word, before it became the row's
    error: the cause at its end was lost. It is kept up to ``BODY_CHARS``, then marked."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    line = {"custom_id": "a", "method": "POST", "url": "/v1/completions",
            "body": {"model": "demo", "prompt": "Q:", "max_tokens": 2}}  # fmt: skip
    src.write_text(json.dumps(line) + "\n", encoding="utf-8")
    argv = ["batch", str(src), str(out), "--quiet", "--server"]
    cause = b"engine failed: CUDA out of memory while allocating KV blocks"
    with failing_server(
        b"Traceback (most recent call last):\n" + b"  frame\n" * 150 + cause
    ) as url:
        assert cli_main([*argv, url]) == 1  # the one request failed
    message = load_results(out)[0]["error"]["message"]
    assert "server answered 503: Traceback" in message and cause.decode() in message
    with failing_server(b"y" * (BODY_CHARS + 5_000)) as url:
        assert cli_main([*argv, url, "--retry-failed"]) == 1
    message = load_results(out)[0]["error"]["message"]
    assert "y" * BODY_CHARS in message and "[... 5,000 more characters cut]" in message
