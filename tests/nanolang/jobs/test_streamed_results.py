"""A results file is read a line at a time: resuming (the torn-line repair, the check that the
file holds results, the fingerprint check, the ids already done), ``--retry-failed`` and the
summary hold one line and a little per row, never the file (it was read whole, more than once:
a multi-GB results file needed several times its size in memory to resume). Measured with
``tracemalloc`` on a results file of 20 MB; the bound is a fraction of that."""

from __future__ import annotations

import json
import socket
from pathlib import Path

import pytest

from nanolang.cli import main as cli_main
from nanolang.jobs import iter_results, load_results, repair
from nanolang.jobs.batch import BATCH_LINES, output_line
from nanolang.jobs.batch_input import read_requests
from nanolang.jobs.results import TAIL_BYTES
from nanolang.jobs.resume import ResumeOptions, prepare
from tests.nanolang.loopback import peak_bytes

ROWS = 1_000
TEXT_CHARS = 20_000  # each answer's text: a results file of about 20 MB
TORN = b'{"id": "batch_req_torn", "custom_id": "r'  # a write cut short by a kill


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def big_batch(tmp_path: Path, failed_every: int = 0) -> tuple[Path, Path]:
    """A batch input of ``ROWS`` requests and its finished output (long answers; every
    ``failed_every``-th one a 500), ending in a torn line."""
    src, out = tmp_path / "in.jsonl", tmp_path / "out.jsonl"
    lines = [
        {"custom_id": f"r{i}", "method": "POST", "url": "/v1/completions",
         "body": {"model": "demo", "prompt": "Q:", "max_tokens": 2, "seed": i}}
        for i in range(ROWS)
    ]  # fmt: skip
    src.write_text("".join(json.dumps(x) + "\n" for x in lines), encoding="utf-8")
    with out.open("w", encoding="utf-8") as f:
        for row in read_requests(src):
            status = 500 if failed_every and row.line % failed_every == 0 else 200
            text = f"{row.line} " + "x" * TEXT_CHARS
            body = {"choices": [{"text": text}], "usage": {"completion_tokens": 2}}
            response = {"status_code": status, "request_id": "req", "body": body}
            f.write(json.dumps(output_line(row, response, None, 0.01)) + "\n")
    with out.open("ab") as f:
        f.write(TORN)
    return src, out


def test_resuming_and_summarizing_a_large_batch_output_holds_a_line_at_a_time(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    src, out = big_batch(tmp_path)
    size = out.stat().st_size
    assert size > ROWS * TEXT_CHARS
    dead = f"http://127.0.0.1:{closed_port()}"  # every request is done: none is sent
    argv = ["batch", str(src), str(out), "--server", dead, "--quiet"]
    report = tmp_path / "r.html"
    small_src, small_out = tmp_path / "small_in.jsonl", tmp_path / "small_out.jsonl"
    for small, big in ((small_src, src), (small_out, out)):  # one done request
        small.write_bytes(big.read_bytes().split(b"\n", 1)[0] + b"\n")
    assert cli_main(["batch", str(small_src), str(small_out), "--server", dead, "--quiet"]) == 0
    # the run above imported what the CLI imports: the peak below is the job's own
    status, peak = peak_bytes(lambda: cli_main([*argv, "--report", str(report)]))
    assert status == 0
    # measured: 1.7 MB (ids, a few numbers per request, the report) for the 20 MB file; read
    # whole, as it was, 62 MB
    assert peak < size / 5, (peak, size)
    captured = capsys.readouterr()
    assert "dropped a torn last line" not in captured.out  # logged, not printed
    shown = " ".join(captured.out.replace("│", " ").split())
    assert f"rows (done / in dataset) {ROWS} / {ROWS}" in shown, shown
    assert f"tokens (prompt / generated) 0 / {2 * ROWS}" in shown, shown
    assert "this run: rows / failed 0 / 0" in shown, shown
    assert out.stat().st_size == size - len(TORN)  # the torn line cut, nothing else
    assert out.read_bytes().endswith(b"\n")
    assert report.read_text(encoding="utf-8").count("<rect") > 0


def test_retry_failed_over_a_large_file_holds_a_line_at_a_time(tmp_path: Path) -> None:
    """``--retry-failed`` rewrites the file a line at a time (its kept lines byte for byte)."""
    src, out = big_batch(tmp_path, failed_every=10)
    repair(out)
    before = out.read_bytes().split(b"\n")
    size = out.stat().st_size
    expected = {row.custom_id: row.fingerprint for row in read_requests(src)}
    note, peak = peak_bytes(
        lambda: prepare(out, expected, BATCH_LINES, ResumeOptions(retry_failed=True))
    )
    assert note is not None and f"{ROWS // 10} failed rows" in note
    assert peak < size / 10, (peak, size)  # measured: 0.1 MB; read whole, as it was, 43 MB
    after = out.read_bytes().split(b"\n")
    assert after == [line for i, line in enumerate(before[:-1]) if i % 10] + [b""]


def test_iter_results_reads_lines_one_at_a_time(tmp_path: Path) -> None:
    path = tmp_path / "r.jsonl"
    lines = [{"id": str(i), "output": "y" * 10_000} for i in range(1_000)]
    path.write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"id": "torn', "utf-8")
    count, peak = peak_bytes(lambda: sum(1 for _ in iter_results(path)))
    assert count == 1_000
    assert peak < path.stat().st_size / 20, peak
    assert load_results(path) == lines  # the torn line does not parse: skipped


@pytest.mark.parametrize("head", [b"", b'{"id": "a"}\n', b'{"id": "a"}\n' * 10_000])
def test_repair_cuts_a_torn_line_longer_than_what_it_reads_at_a_time(
    tmp_path: Path, head: bytes
) -> None:
    """``repair`` reads back from the end in pieces of ``TAIL_BYTES``: a torn line longer than
    one piece (or a file that is one torn line) is cut whole, and nothing before it."""
    path = tmp_path / "r.jsonl"
    torn = b'{"id": "b", "output": "' + b"z" * (3 * TAIL_BYTES)
    path.write_bytes(head + torn)
    assert repair(path) == len(torn)
    assert path.read_bytes() == head
    assert repair(path) == 0
