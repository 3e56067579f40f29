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
def test_example_runs(source: str, backend: LocalBackend, tmp_path: Path) -> None:
    first = source.splitlines()[0]
    assert first.startswith("# args: "), "each example states its arguments"
    args = json.loads(first.removeprefix("# args: "))
    second = source.splitlines()[1]
    names = second.removeprefix("# tools: ").split(", ") if second.startswith("# tools: ") else []
    for block in BLOCKS:  # blocks marked `# file: NAME` are files other examples import
        marker = block.splitlines()[1]
        if marker.startswith("# file: "):
            (tmp_path / marker.removeprefix("# file: ")).write_text(block)
    program = nl.compile(source, filename=str(tmp_path / "language.md"))
    tools = {name: DOC_TOOLS[name] for name in names}
    outcome = asyncio.run(program.arun_outcome(args, backend, seed=0, tools=tools))
    assert outcome.error is None, outcome.error.format()
    json.dumps(outcome.value)


PYTHON_BLOCKS = re.findall(r"```python\n(.*?)```", DOC.read_text(encoding="utf-8"), flags=re.S)


def test_python_examples_run(
    backend: LocalBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The doc's Python blocks, in order, as one script, on the tiny engine; every decorated
    program they define is also run once."""
    (tmp_path / "classify.nano").write_text(BLOCKS[0])
    monkeypatch.chdir(tmp_path)
    nl.set_backend(backend)
    namespace: dict[str, object] = {}
    try:
        for block in PYTHON_BLOCKS:
            exec(compile(block, "language.md", "exec"), namespace)
        solve = namespace["solve"]
        assert isinstance(solve, nl.Program)
        value = solve.run(question="1 + 1?", n=1)  # (256-token thoughts: one fits the engine)
        assert len(value["thought"]) == 1 and value["best"] in "123456789"
    finally:
        nl.set_backend(None)
    assert namespace["calculator"]("2*3") == "6"  # type: ignore[operator]
    assert len(namespace["results"]) == 2  # type: ignore[arg-type]
