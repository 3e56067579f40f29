"""Validation of decoding constraints with the same library the engine uses (outlines-core)."""

from __future__ import annotations

import json
import re
from functools import lru_cache

from outlines_core import Index, Vocabulary
from outlines_core.json_schema import build_regex_from_schema


@lru_cache(maxsize=1)
def _probe_vocabulary() -> Vocabulary:
    # every printable ASCII character as its own token: enough to build any regex's automaton
    tokens = {chr(c): [c] for c in range(32, 127)}
    tokens.update({"\n": [10], "\t": [9]})
    return Vocabulary(0, tokens)


def regex_error(pattern: str) -> str | None:
    """Why ``pattern`` is not a usable constraint, or None when it is."""
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"invalid regex {pattern!r}: {exc}"
    try:
        Index(pattern, _probe_vocabulary())
    except (ValueError, TypeError) as exc:
        if _only_non_ascii_problem(pattern):
            return None
        return f"regex {pattern!r} is not supported by the constrained decoder: {exc}"
    return None


def _only_non_ascii_problem(pattern: str) -> bool:
    # the probe vocabulary is ASCII; a pattern needing other characters is judged by `re` alone
    return any(ord(ch) > 126 for ch in pattern)


def json_schema_error(schema: str) -> str | None:
    """Why ``schema`` (JSON text) is not a usable JSON-schema constraint, or None."""
    try:
        parsed = json.loads(schema)
    except json.JSONDecodeError as exc:
        return f"json_schema is not valid JSON: {exc}"
    if not isinstance(parsed, dict):
        return "json_schema must be a JSON object"
    try:
        pattern = build_regex_from_schema(schema)
    except (ValueError, TypeError) as exc:
        return f"invalid JSON schema: {exc}"
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"JSON schema compiles to an unusable regex: {exc}"
    return None
