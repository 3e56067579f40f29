"""Built-in expression functions: the only functions a .nano program can call."""

from __future__ import annotations

import math
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
    returns: str = "any"  # the result's type for the static checks (check/inference.py)


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


def _float(value: Any) -> float:
    """A finite float (values are JSON: no NaN or infinity, e.g. from a generated "nan")."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        try:
            return float(value)
        except OverflowError:
            digits = len(str(abs(value)))
            raise BuiltinError(
                f"float(): an integer of {digits} digits is too large for a float"
            ) from None
    if isinstance(value, str):
        try:
            result = float(value.strip())
        except ValueError:
            raise BuiltinError(f"float() cannot parse {value!r} as a number") from None
        if not math.isfinite(result):
            raise BuiltinError(f"float() cannot parse {value!r} as a finite number")
        return result
    raise BuiltinError(f"float() needs a string or number, got {type_name(value)}")


def _range(a: Any, b: Any = None) -> list[int]:
    start, stop = (0, a) if b is None else (a, b)
    for v in (start, stop):
        if isinstance(v, bool) or not isinstance(v, int):
            raise BuiltinError(f"range() needs integers, got {type_name(v)}")
    if stop - start > 100_000:
        raise BuiltinError("range() of more than 100000 numbers")
    return list(range(start, stop))


def _record_fn(name: str, method: Callable[[dict], Any]) -> Callable[[Any], list[Any]]:
    def apply(value: Any) -> list[Any]:
        if not isinstance(value, dict):
            raise BuiltinError(f"{name}() needs a record, got {type_name(value)}")
        return list(method(value))

    return apply


def _numbers_fn(name: str, method: Callable[[list], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if not isinstance(value, list) or not all(
            isinstance(v, (int, float)) and not isinstance(v, bool) for v in value
        ):
            raise BuiltinError(f"{name}() needs a list of numbers")
        if not value and name != "sum":
            raise BuiltinError(f"{name}() of an empty list")
        result = method(value)
        if isinstance(result, float) and not math.isfinite(result):
            raise BuiltinError(f"{name}() overflows: the result is too large for a float")
        return result

    return apply


def _number_fn(name: str, method: Callable[[Any], Any]) -> Callable[[Any], Any]:
    def apply(value: Any) -> Any:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise BuiltinError(f"{name}() needs a number, got {type_name(value)}")
        return method(value)

    return apply


def _text2(name: str, method: Callable[[str, str], Any]) -> Callable[[Any, Any], Any]:
    def apply(value: Any, other: Any) -> Any:
        if not isinstance(value, str) or not isinstance(other, str):
            raise BuiltinError(f"{name}() needs two strings")
        return method(value, other)

    return apply


def _split(value: Any, sep: Any = None) -> list[str]:
    if not isinstance(value, str) or not (sep is None or (isinstance(sep, str) and sep)):
        raise BuiltinError("split() needs a string and a non-empty separator string")
    return value.split(sep)


def _replace(value: Any, old: Any, new: Any) -> str:
    if not all(isinstance(v, str) for v in (value, old, new)) or not old:
        raise BuiltinError("replace(s, old, new) needs three strings, old non-empty")
    return str(value.replace(old, new))


def _exp(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise BuiltinError(f"exp() needs a number, got {type_name(value)}")
    try:
        return math.exp(value)
    except OverflowError:
        raise BuiltinError(f"exp({value}) is too large") from None


def _strip(value: Any, chars: Any = None) -> str:
    if not isinstance(value, str) or not (chars is None or isinstance(chars, str)):
        raise BuiltinError("strip(s, chars) needs strings")
    return value.strip(chars)


def _meta(value: Any) -> Any:  # evaluated by the interpreter (it reads the gen's metadata)
    raise BuiltinError("meta() takes the name of a gen variable")


def _refused(kind: str) -> Callable[..., Any]:
    def apply(*_: Any) -> Any:
        raise BuiltinError(f"{kind} are not supported: the runtime serves text-only models")

    return apply


BUILTINS: dict[str, Builtin] = {
    b.name: b
    for b in (
        Builtin("len", 1, 1, _len, "length of a string, list or record", "int"),
        Builtin("join", 1, 2, _join, 'join(list, sep = ""): the items as text, separated', "str"),
        Builtin("str", 1, 1, to_text, "the value as text (lists and records as JSON)", "str"),
        Builtin("int", 1, 1, _int, "a number or a string of digits as an integer", "int"),
        Builtin("float", 1, 1, _float, "a number or a numeric string as a float", "float"),
        Builtin("lower", 1, 1, _text_fn("lower", str.lower), "lower-cased string", "str"),
        Builtin("upper", 1, 1, _text_fn("upper", str.upper), "upper-cased string", "str"),
        Builtin("strip", 1, 2, _strip, "strip(s, chars): without surrounding spaces/chars", "str"),
        Builtin("split", 1, 2, _split, "split(s, sep): the pieces (sep: whitespace)", "list"),
        Builtin("replace", 3, 3, _replace, "replace(s, old, new)", "str"),
        Builtin("startswith", 2, 2, _text2("startswith", str.startswith), "prefix test", "bool"),
        Builtin("endswith", 2, 2, _text2("endswith", str.endswith), "suffix test", "bool"),
        Builtin("range", 1, 2, _range, "range(n) or range(a, b): a list of integers", "list"),
        Builtin("keys", 1, 1, _record_fn("keys", dict.keys), "a record's keys", "list"),
        Builtin("values", 1, 1, _record_fn("values", dict.values), "a record's values", "list"),
        Builtin("min", 1, 1, _numbers_fn("min", min), "smallest of a list of numbers", "number"),
        Builtin("max", 1, 1, _numbers_fn("max", max), "largest of a list of numbers", "number"),
        Builtin("sum", 1, 1, _numbers_fn("sum", sum), "sum of a list of numbers", "number"),
        Builtin("abs", 1, 1, _number_fn("abs", abs), "absolute value", "number"),
        Builtin("round", 1, 1, _number_fn("round", round), "nearest integer", "int"),
        Builtin("exp", 1, 1, _exp, "e to the power x (a logprob's probability)", "float"),
        Builtin("meta", 1, 1, _meta, "meta(x): gen x's token ids, counts, logprobs", "record"),
        Builtin("image", 0, 9, _refused("images"), "refused: no vision model", "any"),
        Builtin("video", 0, 9, _refused("videos"), "refused: no vision model", "any"),
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
