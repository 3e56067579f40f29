"""Every program of programs/ end to end on the demo model (CPU): the first rows of its own
dataset run as one batch; each instance must succeed, make the calls its shape implies (forks,
nested forks, loops) and return a value of the right form, and enough answers must be right."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

import pytest

import nanolang as nl
from nanolang.backends.local import LocalBackend
from nanolang.demo.suite import SUITE, SuiteEntry
from nanolang.jobs import read_rows
from nanolang.jobs.metrics import METRICS
from nanolang.run.tools import load_tools

ROWS = 6

Check = Callable[[Any, dict[str, Any]], bool]


def _ints(value: Any, args: dict[str, Any]) -> bool:
    return isinstance(value, list) and len(value) == len(args["steps"])


SHAPES: dict[str, tuple[Check, Callable[[dict[str, Any]], int]]] = {
    # name: (form of the value, number of gen/select calls per instance)
    "classify": (lambda v, a: v in ("positive", "negative"), lambda a: 1),
    "mmlu": (lambda v, a: v in ("A", "B", "C", "D"), lambda a: 1),
    "gsm8k": (lambda v, a: isinstance(v, int), lambda a: 2),
    "self_consistency": (lambda v, a: isinstance(v, int), lambda a: 3 * 2),
    "tree_of_thought": (lambda v, a: isinstance(v, int), lambda a: 3 + 3 * 3 * 2),
    "judge": (lambda v, a: v in ("yes", "no"), lambda a: 3),
    "extract": (
        lambda v, a: set(v) == {"name", "age", "city"} and isinstance(v["age"], int),
        lambda a: 3,
    ),
    "extract_schema": (
        lambda v, a: set(json.loads(v)) == {"name", "age", "city"},
        lambda a: 1,
    ),
    "chat": (_ints, lambda a: len(a["steps"])),
    "react": (lambda v, a: isinstance(v, str) and v != "", lambda a: 3 * 2),
}

# fewest right answers out of ROWS (model, data and seeds are fixed; chance is 3 for classify
# and judge, 1.5 for mmlu, about 0 for the rest)
MIN_CORRECT = {
    "classify": 6,
    "mmlu": 5,
    "gsm8k": 2,
    "self_consistency": 2,
    "tree_of_thought": 2,
    "judge": 4,
    "extract": 5,
    "extract_schema": 5,
    "chat": 3,
    "react": 5,
}


@pytest.mark.parametrize("item", SUITE, ids=[s.name for s in SUITE])
def test_program_end_to_end(item: SuiteEntry, demo_backend: LocalBackend) -> None:
    rows = read_rows(item.data_path)[:ROWS]
    program = nl.load(item.path, item.program)
    tools = load_tools(None if item.tools_path is None else str(item.tools_path), program.module)
    outcomes = program.run_batch_outcomes(
        [r.args for r in rows], progress=False, backend=demo_backend, seed=0, tools=tools
    )
    form, calls = SHAPES[item.name]
    for row, outcome in zip(rows, outcomes, strict=True):
        assert outcome.error is None, outcome.error.format()
        assert form(outcome.value, row.args), (row.id, outcome.value)
        assert len(outcome.calls) == calls(row.args), row.id
    score = METRICS[item.metric]
    correct = sum(score(o.value, r.expected) for o, r in zip(outcomes, rows, strict=True))
    assert correct >= MIN_CORRECT[item.name], [o.value for o in outcomes]
