"""The arguments ``gen`` and ``select`` accept, their types and checks (static and run time)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

Check = Callable[[Any], str | None]

DEFAULT_MAX_TOKENS = 128  # a gen without max_tokens (SGLang's default: a literal port is not cut)

SELECT_METHODS = (
    "mean",
    "sum",
    "token_length_normalized",
    "greedy",
    "unconditional_likelihood_normalized",
)
# the regex each ``dtype`` constrains its gen's output to (SGLang's shorthands)
DTYPE_REGEX = {
    "int": r"[-+]?[0-9]+",
    "float": r"[-+]?[0-9]+(\.[0-9]+)?",
    "bool": r"(True|False)",
    "str": r'"[^"\\\n]*"',
}
DTYPES = tuple(DTYPE_REGEX)


def _int(lo: int | None = None) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, int):
            return "expected an integer"
        if lo is not None and v < lo:
            return f"expected an integer >= {lo}"
        return None

    return check


def _number(lo: float, hi: float, lo_open: bool = False) -> Check:
    def check(v: Any) -> str | None:
        if isinstance(v, bool) or not isinstance(v, (int, float)):
            return "expected a number"
        if v < lo or v > hi or (lo_open and v == lo):
            left = "(" if lo_open else "["
            return f"expected a number in {left}{lo}, {hi}]"
        return None

    return check


def _bool(v: Any) -> str | None:
    return None if isinstance(v, bool) else "expected true or false"


def _stop(v: Any) -> str | None:
    items = v if isinstance(v, list) else [v]
    if not all(isinstance(s, str) and s for s in items):
        return "expected a non-empty string or a list of non-empty strings"
    return None


def _regex(v: Any) -> str | None:
    return _constraint_error(v, None) if isinstance(v, str) else "expected a regex string"


def _schema(v: Any) -> str | None:
    if not isinstance(v, str):
        return "expected a JSON schema string"
    return _constraint_error(None, v)


def _constraint_error(regex: str | None, json_schema: str | None) -> str | None:
    # the engine's own validation (llguidance, same limits as the server); loaded only when a
    # program has a constraint, so checking other programs imports no torch
    from runtime.constraints import constraint_error

    problem = constraint_error(regex, json_schema)
    if problem is None:
        return None
    # one line (errors print as file:line:column, the source line, a caret): the summary, and
    # the parser's own ``error:`` line when it draws a picture of the pattern
    lines = [line.strip() for line in problem.splitlines() if line.strip()]
    detail = next((line for line in lines[1:] if line.startswith("error: ")), None)
    return f"{lines[0]} {detail.removeprefix('error: ')}" if detail else lines[0]


def _dtype(v: Any) -> str | None:
    if v not in DTYPES:
        return f"expected one of {', '.join(repr(d) for d in DTYPES)}"
    return _constraint_error(DTYPE_REGEX[v], None)  # the engine's own check of its regex


def _method(v: Any) -> str | None:
    if v not in SELECT_METHODS:
        return f"expected one of {', '.join(repr(m) for m in SELECT_METHODS)}"
    return None


GEN_ARGS: dict[str, Check] = {
    "max_tokens": _int(0),  # 0: prefill only, no text (the next token's top logprobs)
    "temperature": _number(0.0, float("inf")),
    "top_p": _number(0.0, 1.0, lo_open=True),
    "top_k": _int(),
    "min_p": _number(0.0, 1.0),
    "stop": _stop,
    "regex": _regex,
    "json_schema": _schema,
    "seed": _int(),
    "ignore_eos": _bool,
    "n": _int(1),
    "dtype": _dtype,
    "min_tokens": _int(0),
    "frequency_penalty": _number(-2.0, 2.0),
    "presence_penalty": _number(-2.0, 2.0),
    "repetition_penalty": _number(0.0, float("inf"), lo_open=True),
    "return_logprob": _bool,
    "top_logprobs_num": _int(0),
    "return_text_in_logprobs": _bool,  # SGLang's; logprob entries always carry the text
}
# gen arguments the interpreter handles itself (not SamplingParams fields)
LANGUAGE_ARGS = ("n", "dtype", "return_logprob", "top_logprobs_num", "return_text_in_logprobs")

SELECT_ARGS: dict[str, Check] = {"method": _method}


def argument_error(allowed: dict[str, Check], name: str, value: Any) -> str | None:
    """Why ``name = value`` is not acceptable (unknown name or bad value), or None."""
    if name not in allowed:
        return f"unknown argument {name!r}; expected one of {', '.join(sorted(allowed))}"
    problem = allowed[name](value)
    return f"bad value for {name}: {problem}" if problem else None
