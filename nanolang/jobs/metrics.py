"""Metrics: does a row's output count as correct against its expected answer?

- ``exact``: equal values (numbers compare as numbers, strings without surrounding spaces).
- ``choice``: the output text, trimmed and lower-cased, equals the expected one (choice accuracy).
- ``json``: outputs that are JSON text are parsed first, then compared as ``exact``.
- ``contains``: the expected text occurs in the output text.
- ``expr: EXPRESSION``: a nanolang expression over ``output`` and ``expected`` that yields a
  boolean, e.g. ``expr: int(output) == int(expected)``. A program file can name its own metric in
  a comment line ``# metric: exact`` or ``# metric: expr: lower(strip(output)) == expected``;
  ``nanolang eval`` uses it when ``--metric`` is not given.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
from collections.abc import Callable
from typing import Any

from nanolang.run.expressions import Evaluator
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError
from nanolang.values.kinds import to_text

Metric = Callable[[Any, Any], bool]


def _norm(value: Any) -> Any:
    if isinstance(value, str):
        return value.strip()
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, list):
        return [_norm(v) for v in value]
    if isinstance(value, dict):
        return {k: _norm(v) for k, v in value.items()}
    return value


def exact(output: Any, expected: Any) -> bool:
    return _norm(output) == _norm(expected)


def choice(output: Any, expected: Any) -> bool:
    return to_text(output).strip().lower() == to_text(expected).strip().lower()


def _parsed(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def json_equal(output: Any, expected: Any) -> bool:
    return exact(_parsed(output), _parsed(expected))


def contains(output: Any, expected: Any) -> bool:
    return to_text(expected).strip() in to_text(output)


METRICS: dict[str, Metric] = {
    "exact": exact,
    "choice": choice,
    "json": json_equal,
    "contains": contains,
}


EXPR_PREFIX = "expr:"
_DECLARED = re.compile(r"^\s*#\s*metric:\s*(.+?)\s*$", re.MULTILINE)
logger = logging.getLogger("nanolang.eval")


class MetricError(ValueError):
    """An unknown metric name or a metric expression that does not parse."""


async def _no_calls(expr: tree.Call, args: dict[str, Any]) -> Any:
    raise NanoError("a metric expression cannot call programs", expr.span)


def expression_metric(source: str) -> Metric:
    """A metric from a nanolang expression over ``output`` and ``expected``."""
    from nanolang.syntax.parser import parse_expr

    try:
        expr = parse_expr(source, "<metric>")
    except NanoError as exc:
        raise MetricError(f"metric expression {source!r} does not parse: {exc}") from None

    def metric(output: Any, expected: Any) -> bool:
        env = {"output": output, "expected": expected}
        try:
            value = asyncio.run(Evaluator(env, _no_calls).eval(expr))
        except NanoError as exc:
            logger.warning("metric %r failed on output %r: %s", source, output, exc)
            return False
        if not isinstance(value, bool):
            raise MetricError(f"metric expression {source!r} gave {value!r}, not a boolean")
        return value

    return metric


def resolve_metric(spec: str) -> Metric:
    """A metric by name, or ``expr: ...`` for an expression metric."""
    if spec in METRICS:
        return METRICS[spec]
    if spec.startswith(EXPR_PREFIX):
        return expression_metric(spec[len(EXPR_PREFIX) :].strip())
    names = ", ".join(sorted(METRICS))
    raise MetricError(f"unknown metric {spec!r}: use one of {names}, or 'expr: EXPRESSION'")


def declared_metric(source: str) -> str | None:
    """The metric a program file names in a ``# metric: ...`` comment line, if any."""
    found = _DECLARED.search(source)
    return found.group(1) if found else None
