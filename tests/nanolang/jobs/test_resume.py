"""Resuming a results file: fingerprints (another program, seed or dataset is an error),
``--restart``, ``--retry-failed``, and ``--shard`` splits that concatenate to the whole job.

The programs make no requests, so the executor runs them with a backend that is only asked
for something when a test wants a failure."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nanolang as nl
from nanolang.backends.base import Backend, BackendError
from nanolang.jobs import EvalJob, JobConfig, ResultLog, load_results, read_rows
from nanolang.jobs.fingerprint import FingerprintMismatch, kept_fingerprints
from nanolang.jobs.job import row_facts
from nanolang.jobs.resume import EVAL_LINES, ResumeOptions, prepare
from nanolang.jobs.shard import Shard
from runtime.outputs import RequestOutput
from runtime.sampling_params import SamplingParams
from tests.nanolang.helpers import CountingBackend

DOUBLE = "program main(x) {\n    return int(x) + int(x)\n}\n"
TRIPLE = "program main(x) {\n    return int(x) + int(x) + int(x)\n}\n"
ASK = 'program main(x) {\n    "{x}"\n    gen y(max_tokens = 1)\n    return int(x)\n}\n'


class Flaky(CountingBackend):
    """Refuses every request while ``down`` (as a dead server's backend does), else answers."""

    def __init__(self) -> None:
        super().__init__()
        self.down = True

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        if self.down:
            raise BackendError("server unreachable")
        return await super().generate(prompt_ids, params)


def write(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def run(
    source: str,
    data: Path,
    out: Path,
    seed: int = 0,
    options: ResumeOptions | None = None,
    backend: Backend | None = None,
    shard: Shard | None = None,
) -> list[dict[str, Any]]:
    module = nl.compile(source).module
    config = JobConfig("main", seed=seed)
    rows = read_rows(data, keep=row_facts(module, config, lambda row: ""))  # as nanolang eval
    prepare(out, kept_fingerprints(rows.refs), EVAL_LINES, options or ResumeOptions())
    with ResultLog(out) as log:
        EvalJob(module, backend or Flaky(), config, log).run(shard.select(rows) if shard else rows)
    return load_results(out)


def test_every_line_carries_its_fingerprint(tmp_path: Path) -> None:
    data = write(tmp_path / "d.jsonl", [{"id": "a", "x": "1"}, {"id": "b", "x": "2"}])
    lines = run(DOUBLE, data, tmp_path / "out.jsonl")
    parts = [line["fingerprint"] for line in lines]
    assert {tuple(sorted(p)) for p in parts} == {("program", "row", "settings")}
    assert parts[0]["program"] == parts[1]["program"] and parts[0]["row"] != parts[1]["row"]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ("program", "another program: 3 of 3 lines"),
        ("dataset", "other rows under the same ids (another dataset?): 3 of 3 lines"),
        ("seed", "other settings (seed): 3 of 3 lines"),
    ],
)
def test_resuming_another_job_is_an_error_until_restart(
    tmp_path: Path, change: str, message: str
) -> None:
    rows = [{"id": i, "x": str(i), "expected": 2 * i} for i in range(3)]
    data, out = write(tmp_path / "d.jsonl", rows), tmp_path / "out.jsonl"
    run(DOUBLE, data, out)
    before = out.read_bytes()
    source, seed = (TRIPLE if change == "program" else DOUBLE), (7 if change == "seed" else 0)
    if change == "dataset":
        write(data, [{"id": i, "x": str(i + 5), "expected": 2 * i} for i in range(3)])
    with pytest.raises(FingerprintMismatch, match="--restart") as info:
        run(source, data, out, seed)
    assert message in str(info.value)
    assert out.read_bytes() == before  # nothing touched
    lines = run(source, data, out, seed, ResumeOptions(restart=True))
    assert len(lines) == 3 and out.read_bytes() != before


def test_results_of_ids_missing_from_the_dataset_are_a_mismatch(tmp_path: Path) -> None:
    out = tmp_path / "out.jsonl"
    run(DOUBLE, write(tmp_path / "a.jsonl", [{"id": "p", "x": "1"}]), out)
    with pytest.raises(FingerprintMismatch, match="not in this dataset: 1 of 1"):
        run(DOUBLE, write(tmp_path / "b.jsonl", [{"id": "q", "x": "1"}]), out)


def test_a_file_without_fingerprints_is_refused(tmp_path: Path) -> None:
    data, out = write(tmp_path / "d.jsonl", [{"id": "a", "x": "1"}]), tmp_path / "out.jsonl"
    out.write_text('{"id": "a", "output": 2, "error": null}\n', encoding="utf-8")
    with pytest.raises(FingerprintMismatch, match="older nanolang"):
        run(DOUBLE, data, out)


def test_retry_failed_reruns_only_failed_rows_and_keeps_one_line_per_row(tmp_path: Path) -> None:
    rows = [{"id": i, "x": str(i)} for i in range(4)] + [{"id": "bad", "x": "oops"}]
    data, out = write(tmp_path / "d.jsonl", rows), tmp_path / "out.jsonl"
    backend = Flaky()
    first = run(ASK, data, out, backend=backend)
    assert [line["error"] is not None for line in first] == [True] * 5
    assert "server unreachable" in first[0]["error"]
    backend.down = False
    assert run(ASK, data, out, backend=backend) == first  # a plain resume reruns nothing
    second = run(ASK, data, out, options=ResumeOptions(retry_failed=True), backend=backend)
    by_id = {line["id"]: line for line in second}
    assert sorted(by_id) == ["0", "1", "2", "3", "bad"] and len(second) == 5
    assert [by_id[str(i)]["output"] for i in range(4)] == [0, 1, 2, 3]
    assert "int() cannot parse 'oops'" in by_id["bad"]["error"]


def test_retry_failed_copies_the_lines_it_keeps_byte_for_byte(tmp_path: Path) -> None:
    """Kept lines are copied as they are, not parsed and written again: a line put in by
    another tool (compact separators, escaped non-ASCII) stays exactly as it was."""
    rows = [{"id": "a", "x": "1"}, {"id": "b", "x": "caf\u00e9"}, {"id": "c", "x": "2"}]
    data, out = write(tmp_path / "d.jsonl", rows), tmp_path / "out.jsonl"
    run(DOUBLE, data, out)  # b fails: int('café')
    lines = [json.loads(raw) for raw in out.read_bytes().splitlines()]
    compact = [json.dumps(line, separators=(",", ":"), ensure_ascii=True).encode() for line in
               lines]  # fmt: skip
    out.write_bytes(b"\n".join(compact) + b"\n")
    after = run(DOUBLE, data, out, options=ResumeOptions(retry_failed=True))
    assert out.read_bytes().splitlines()[:2] == [compact[0], compact[2]]
    assert [line["id"] for line in after] == ["a", "c", "b"]


def test_shards_split_deterministically_and_concatenate_to_the_whole_job(tmp_path: Path) -> None:
    rows = [{"id": i, "x": str(i)} for i in range(11)]
    data = write(tmp_path / "d.jsonl", rows)
    whole = run(DOUBLE, data, tmp_path / "whole.jsonl")
    merged = tmp_path / "merged.jsonl"
    for i in range(3):
        shard_out = tmp_path / f"shard{i}.jsonl"
        lines = run(DOUBLE, data, shard_out, shard=Shard(i, 3))
        assert len(lines) in (3, 4)
        with merged.open("a", encoding="utf-8") as f:
            f.write(shard_out.read_text(encoding="utf-8"))
    key = lambda line: line["id"]  # noqa: E731
    strip = lambda line: {k: v for k, v in line.items() if k != "time_s"}  # noqa: E731
    merged_lines = sorted(load_results(merged), key=key)
    assert [strip(x) for x in merged_lines] == [strip(x) for x in sorted(whole, key=key)]
    assert run(DOUBLE, data, merged) == load_results(merged)  # the merged file resumes: all done


def test_shard_specs() -> None:
    assert Shard.parse("1/4") == Shard(1, 4)
    for bad in ("4/4", "x", "1/0", "-1/2"):
        with pytest.raises(ValueError, match="shard"):
            Shard.parse(bad)
    items = list(range(10))
    parts = [Shard(i, 4).select(items, group=lambda n: str(n % 2)) for i in range(4)]
    assert sorted(x for p in parts for x in p) == items
    assert parts[0] == [0, 2]  # grouped: the even rows first
