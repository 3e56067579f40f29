"""Runtime values: strings, numbers, bools, lists and records (dicts), and their text form."""

from __future__ import annotations

import json
from typing import Any


def to_text(value: Any) -> str:
    """How a value reads when interpolated: strings as-is, bools as true/false, others as JSON."""
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return str(value)
    return json.dumps(value, ensure_ascii=False)


def is_value(value: Any) -> bool:
    """Whether ``value`` is a nanolang value (used to validate program arguments)."""
    if value is None or isinstance(value, (str, bool, int, float)):
        return True
    if isinstance(value, (list, tuple)):
        return all(is_value(v) for v in value)
    if isinstance(value, dict):
        return all(isinstance(k, str) and is_value(v) for k, v in value.items())
    return False


def normalise(value: Any) -> Any:
    """Tuples become lists so that Python callers may pass either."""
    if isinstance(value, tuple):
        return [normalise(v) for v in value]
    if isinstance(value, list):
        return [normalise(v) for v in value]
    if isinstance(value, dict):
        return {k: normalise(v) for k, v in value.items()}
    return value
