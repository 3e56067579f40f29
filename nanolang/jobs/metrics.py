"""Metrics: does a row's output count as correct against its expected answer?

- ``exact``: equal values (numbers compare as numbers, strings without surrounding spaces).
- ``choice``: the output text, trimmed and lower-cased, equals the expected one (choice accuracy).
- ``json``: outputs that are JSON text are parsed first, then compared as ``exact``.
- ``contains``: the expected text occurs in the output text.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from nanolang.values import to_text

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
