"""One-token choices scored with one request of the context: the same answers and scores as
one request per choice (the path every backend without ``score_token_ids`` still takes)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Callable
from typing import Any

import pytest

from nanolang.api.program import compile
from nanolang.backends.base import Backend
from nanolang.backends.local import LocalBackend
from nanolang.bench.programs import PROGRAMS
from nanolang.run.executor import Executor
from nanolang.run.records import Outcome
from runtime.outputs import RequestOutput
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams


class PerChoice(Backend):
    """The local backend, but without ``score_token_ids``: one request per choice."""

    def __init__(self, inner: LocalBackend) -> None:
        self.inner = inner

    @property
    def tokenizer(self) -> Any:
        return self.inner.tokenizer

    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        return await self.inner.generate(prompt_ids, params)

    async def generate_node(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        node: ProgramRef,
        on_progress: Callable[[RequestOutput], None] | None = None,
    ) -> RequestOutput:
        return await self.inner.generate_node(prompt_ids, params, node, on_progress)

    def end_instance(self, instance: int) -> None:
        self.inner.end_instance(instance)

    def close(self) -> None:
        """The inner backend belongs to the test session."""


def _one_token_choices(tok: Any, n: int = 4) -> list[str]:
    """``n`` choices that are one token each in ``tok`` (the test model's tokenizer)."""
    pool = [" A", " B", " C", " D", "A", "B", "C", "D", " yes", " no", " the", " a", " of"]
    ones = [c for c in pool if len(tok.encode(c, add_special_tokens=False)) == 1]
    assert len(ones) >= n
    return ones[:n]


def _run(source: str, backend: Backend, jobs: list[dict[str, Any]], graph: bool) -> list[Outcome]:
    module = compile(source).module
    executor = Executor(module, backend, seed=0, graph=graph)
    return asyncio.run(executor.run_many([("main", args) for args in jobs]))


def _selects(outcomes: list[Outcome]) -> list[Any]:
    return [c for o in outcomes for c in o.calls if c.kind == "select"]


def _same_choices(one: list[Outcome], per: list[Outcome]) -> None:
    assert all(o.error is None for o in one + per)
    assert [o.value for o in one] == [o.value for o in per]
    for a, b in zip(_selects(one), _selects(per), strict=True):
        assert a.scores is not None and b.scores is not None
        pairs = zip(a.scores, b.scores, strict=True)
        assert all(math.isclose(x, y, abs_tol=1e-5) for x, y in pairs)


@pytest.mark.parametrize("graph", [True, False])
def test_few_shot_answers_are_those_of_one_request_per_choice(
    backend: LocalBackend, graph: bool
) -> None:
    program = PROGRAMS["few_shot"]
    tok = backend.tokenizer
    letters = _one_token_choices(tok)
    jobs = [{**program.args(i, 0.25, tok), "choices": letters} for i in range(12)]
    one = _run(program.source, backend, jobs, graph)
    per = _run(program.source, PerChoice(backend), jobs, graph)
    _same_choices(one, per)
    assert len({o.value for o in one}) > 1  # the instances do not all pick one choice
    assert all(len(c.request_ids) == 1 for c in _selects(one))
    assert all(len(c.request_ids) == 4 for c in _selects(per))
    if graph:
        node = next(n for n in one[0].nodes if n.kind == "select")
        assert node.alternatives == (1, 1, 1, 1) and node.group is None


@pytest.mark.parametrize("method", ["sum", "greedy", "unconditional_likelihood_normalized"])
def test_every_method_scores_one_token_choices_alike(backend: LocalBackend, method: str) -> None:
    letters = ", ".join(f'"{c}"' for c in _one_token_choices(backend.tokenizer))
    source = f"""
program main(q) {{
    "Question {{q}}: which letter?" select a(method = "{method}") from [{letters}]
    " and then" gen rest(max_tokens = 3, temperature = 0, ignore_eos = true)
    return [a, rest]
}}"""
    jobs = [{"q": str(i)} for i in range(6)]
    one = _run(source, backend, jobs, True)
    per = _run(source, PerChoice(backend), jobs, True)
    _same_choices(one, per)  # the chosen token, then what the model generates after it
    requests = 2 if method == "unconditional_likelihood_normalized" else 1
    assert all(len(c.request_ids) == requests for c in _selects(one))


def test_multi_token_choices_keep_one_request_each(backend: LocalBackend) -> None:
    source = 'program main() { "Pick:" select a from [" A", " very long choice"] return a }'
    (outcome,) = _run(source, backend, [{}], True)
    assert outcome.error is None
    (call,) = _selects([outcome])
    assert len(call.request_ids) == 2
