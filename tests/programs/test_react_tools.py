"""programs/react.nano on its real host tool: the Python ``lookup`` of programs/react_tools.py
runs for every lookup action, on the generated target, and its text is the next observation;
``nanolang eval --tools`` gives a job the same function."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

import nanolang as nl
from nanolang.backends.local import LocalBackend
from nanolang.cli import main as cli_main
from nanolang.demo.suite import entry
from nanolang.jobs import read_rows
from nanolang.run.tools import load_tools

REACT = entry("react")


def test_every_lookup_runs_the_host_function(demo_backend: LocalBackend) -> None:
    program = nl.load(REACT.path)
    lookup = load_tools(str(REACT.tools_path), program.module)["lookup"]
    seen: list[tuple[dict[str, str], str, str]] = []

    def recording_lookup(directory: dict[str, str], query: str) -> str:
        answer = lookup(directory, query)
        seen.append((directory, query, answer))
        return answer

    rows = read_rows(REACT.data_path)[:3]
    outcomes = program.run_batch_outcomes(
        [r.args for r in rows], progress=False, backend=demo_backend, seed=0,
        tools={"lookup": recording_lookup},
    )  # fmt: skip
    tokenizer = demo_backend.tokenizer
    lookups = 0
    for row, outcome in zip(rows, outcomes, strict=True):
        assert outcome.error is None, outcome.error.format()
        actions = [c.text for c in outcome.calls if c.kind == "select"]
        targets = [c.text for c in outcome.calls if c.kind == "gen"][1::2]
        for step, (action, target) in enumerate(zip(actions, targets, strict=True)):
            if action != " lookup":
                continue
            lookups += 1
            directory, query, answer = next(s for s in seen if s[0] == row.args["directory"]
                                            and s[1] == target)  # fmt: skip
            assert answer == lookup(directory, query)
            if step + 1 < len(actions):  # the observation is in the next step's prompt
                prompt = tokenizer.decode(outcome.calls[3 * (step + 1)].prompt_token_ids)
                assert f"Observation: {answer}" in prompt
    assert lookups == len(seen) and lookups >= 3


def test_lookup_matches_names_tolerantly() -> None:
    module = nl.load(REACT.path).module
    lookup = load_tools(str(REACT.tools_path), module)["lookup"]
    directory = {"Felix": "Felix lives in Cuba."}
    assert lookup(directory, " Felix") == "Felix lives in Cuba."
    assert lookup(directory, "where felix lives") == "Felix lives in Cuba."
    assert lookup(directory, "Zoe") == "nobody called Zoe is listed."


def test_eval_cli_with_tools(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "react.jsonl"
    data.write_text("".join(line + "\n" for line in REACT.data_path.read_text().splitlines()[:2]))
    out = tmp_path / "out.jsonl"
    base = ["eval", str(REACT.path), "--data", str(data), "--out", str(out), "--quiet"]
    assert cli_main(base) == 1  # no tools given: refused before any row runs
    assert "tool 'lookup' is declared but the run was given no function" in capsys.readouterr().err
    assert not out.exists() or out.read_text() == ""
    assert cli_main([*base, "--tools", str(REACT.tools_path)]) == 0
    results: list[dict[str, Any]] = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(results) == 2 and all(r["error"] is None for r in results), results


def test_eval_cli_refuses_a_missing_or_broken_tools_file(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    data = tmp_path / "react.jsonl"
    data.write_text(REACT.data_path.read_text().splitlines()[0] + "\n")
    out = tmp_path / "out.jsonl"
    base = ["eval", str(REACT.path), "--data", str(data), "--out", str(out), "--quiet"]
    broken = tmp_path / "broken.py"
    broken.write_text("def lookup(directory, query):\n    return (\n")
    missing = tmp_path / "missing.py"
    for tools, said in (
        (missing, f"cannot read tools from {missing}: "),
        (broken, f"{broken}:2:12: the tools file does not parse: "),
        (tmp_path, f"cannot read tools from {tmp_path}: "),
    ):
        assert cli_main([*base, "--tools", str(tools)]) == 1
        err = capsys.readouterr().err
        assert said in err and len(err.strip().splitlines()) == 1, err
    assert not out.exists() or out.read_text() == ""
