"""Expressions back to nanolang source text (for graphs, traces and messages)."""

from __future__ import annotations

import json

from nanolang.syntax import tree

_ESCAPE = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}
_PRECEDENCE = {"or": 1, "and": 2, "==": 4, "!=": 4, "<": 4, ">": 4, "<=": 4, ">=": 4}
_PRECEDENCE.update({"in": 4, "not in": 4, "+": 5, "-": 5, "*": 6, "/": 6})


def quote(text: str) -> str:
    """A string literal whose value is ``text`` (braces doubled, specials escaped)."""
    body = "".join(_ESCAPE.get(c, c) for c in text).replace("{", "{{").replace("}", "}}")
    return f'"{body}"'


def unparse(expr: tree.Expr, parent: int = 0) -> str:
    """Source text of ``expr``; parenthesised where ``parent`` binds tighter."""
    if isinstance(expr, tree.Str):
        return _string(expr)
    if isinstance(expr, tree.Num):
        return json.dumps(expr.value)
    if isinstance(expr, tree.Bool):
        return "true" if expr.value else "false"
    if isinstance(expr, tree.ListLit):
        return "[" + ", ".join(unparse(i) for i in expr.items) + "]"
    if isinstance(expr, tree.Var):
        return expr.name
    if isinstance(expr, tree.Index):
        return f"{unparse(expr.target, 9)}[{unparse(expr.index)}]"
    if isinstance(expr, tree.Func):
        return f"{expr.name}(" + ", ".join(unparse(a) for a in expr.args) + ")"
    if isinstance(expr, tree.Call):
        return f"call {expr.program}({unparse_args(expr.args)})"
    if isinstance(expr, tree.ToolCall):
        return f"call tool {expr.tool}(" + ", ".join(unparse(a) for a in expr.args) + ")"
    if isinstance(expr, tree.Record):
        return "{ " + ", ".join(_field(f) for f in expr.fields) + " }"
    if isinstance(expr, tree.Not):
        text = f"not {unparse(expr.operand, 3)}"
        return f"({text})" if parent > 3 else text
    prec = _PRECEDENCE[expr.op]
    # comparisons do not chain: a comparison operand of a comparison needs parentheses
    left = unparse(expr.left, prec + 1 if prec == 4 else prec)
    text = f"{left} {expr.op} {unparse(expr.right, prec + 1)}"
    return f"({text})" if parent > prec else text


def unparse_args(args: tuple[tree.Arg, ...]) -> str:
    return ", ".join(f"{a.name} = {unparse(a.value)}" for a in args)


def _field(field: tree.Field) -> str:
    if isinstance(field.value, tree.Var) and field.value.name == field.name:
        return field.name
    return f"{field.name}: {unparse(field.value)}"


def _string(expr: tree.Str) -> str:
    pieces = []
    for part in expr.parts:
        if isinstance(part, str):
            pieces.append(quote(part)[1:-1])
        else:  # strings inside a hole have their quotes (and backslashes) escaped
            inner = unparse(part).replace("\\", "\\\\").replace('"', '\\"')
            pieces.append("{" + inner + "}")
    return '"' + "".join(pieces) + '"'
