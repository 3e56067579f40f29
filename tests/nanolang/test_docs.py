"""Every ``nano`` example in docs/language.md checks and runs on the real (tiny) engine."""

from __future__ import annotations

import asyncio
import json
import re
from pathlib import Path

import pytest

import nanolang as nl
from nanolang.backends.local import LocalBackend

DOC = Path(__file__).resolve().parents[2] / "docs" / "language.md"
BLOCKS = re.findall(r"```nano\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def calculator(expr: str) -> str:
    """The doc's example tool (a product of two integers)."""
    lhs, rhs = expr.split("*")
    return str(int(lhs) * int(rhs))


DOC_TOOLS = {"calculator": calculator}


def test_the_doc_has_examples() -> None:
    assert len(BLOCKS) >= 8


@pytest.mark.parametrize("source", BLOCKS, ids=[f"example{i}" for i in range(len(BLOCKS))])
def test_example_runs(source: str, backend: LocalBackend) -> None:
    first = source.splitlines()[0]
    assert first.startswith("# args: "), "each example states its arguments"
    args = json.loads(first.removeprefix("# args: "))
    second = source.splitlines()[1]
    names = second.removeprefix("# tools: ").split(", ") if second.startswith("# tools: ") else []
    program = nl.compile(source, filename="language.md")
    tools = {name: DOC_TOOLS[name] for name in names}
    outcome = asyncio.run(program.arun_outcome(args, backend, seed=0, tools=tools))
    assert outcome.error is None, outcome.error.format()
    json.dumps(outcome.value)
