"""Built-in expression functions: the only functions a .nano program can call."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from nanolang.values.kinds import to_text


class BuiltinError(ValueError):
    """A built-in got a value it cannot handle (reported at the call's position)."""


@dataclass(frozen=True)
class Builtin:
    name: str
    min_args: int
    max_args: int
    fn: Callable[..., Any]
    doc: str


def _len(value: Any) -> int:
    if not isinstance(value, (str, list, dict)):
        raise BuiltinError(f"len() needs a string, list or record, got {type_name(value)}")
    return len(value)


def _join(items: Any, sep: Any = "") -> str:
    if not isinstance(items, list):
        raise BuiltinError(f"join() needs a list, got {type_name(items)}")
    return to_text(sep).join(to_text(i) for i in items)


def _int(value: Any) -> int:
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, (int, float)):
        return int(value)
    if isinstance(value, str):
        try:
            return int(value.strip())
        except ValueError:
            raise BuiltinError(f"int() cannot parse {value!r} as an integer") from None
    raise BuiltinError(f"int() needs a string or number, got {type_name(value)}")


def _text_fn(name: str, method: Callable[[str], str]) -> Callable[[Any], str]:
    def apply(value: Any) -> str:
        if not isinstance(value, str):
            raise BuiltinError(f"{name}() needs a string, got {type_name(value)}")
        return method(value)

    return apply


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("len", 1, 1, _len, "length of a string, list or record"),
        Builtin("join", 1, 2, _join, 'join(list, sep = ""): the items as text, separated'),
        Builtin("str", 1, 1, to_text, "the value as text (lists and records as JSON)"),
        Builtin("int", 1, 1, _int, "a number or a string of digits as an integer"),
        Builtin("lower", 1, 1, _text_fn("lower", str.lower), "lower-cased string"),
        Builtin("strip", 1, 1, _text_fn("strip", str.strip), "string without surrounding spaces"),
    )
}


def type_name(value: Any) -> str:
    """The nanolang name of a value's type."""
    if isinstance(value, bool):
        return "bool"
    if isinstance(value, (int, float)):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "list"
    if isinstance(value, dict):
        return "record"
    return type(value).__name__
