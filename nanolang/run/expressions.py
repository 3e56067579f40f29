"""Expression evaluation at run time. Variables may hold pending ``call`` results (tasks)."""

from __future__ import annotations

import asyncio
import math
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from nanolang.syntax import tree
from nanolang.syntax.errors import NanoRuntimeError
from nanolang.values.functions import BUILTINS, BuiltinError, type_name
from nanolang.values.kinds import to_text

CallRunner = Callable[[tree.Call, dict[str, Any]], Awaitable[Any]]
ToolRunner = Callable[[tree.ToolCall, list[Any]], Awaitable[Any]]


class Evaluator:
    """Evaluates expressions against an environment of variables. ``run_tool`` runs host tools;
    ``meta`` holds each gen's metadata (what ``meta(x)`` reads)."""

    def __init__(
        self,
        env: dict[str, Any],
        run_call: CallRunner,
        run_tool: ToolRunner | None = None,
        meta: Mapping[str, dict[str, Any]] | None = None,
    ) -> None:
        self.env = env
        self.run_call = run_call
        self.run_tool = run_tool
        self.meta: Mapping[str, dict[str, Any]] = meta if meta is not None else {}

    async def lookup(self, var: tree.Var) -> Any:
        if var.name not in self.env:
            raise NanoRuntimeError(f"variable {var.name!r} has no value on this path", var.span)
        value = self.env[var.name]
        if isinstance(value, asyncio.Future):
            value = await value
        return value

    async def eval(self, expr: tree.Expr) -> Any:
        if isinstance(expr, (tree.Num, tree.Bool)):
            return expr.value
        if isinstance(expr, tree.Str):
            return "".join(
                [p if isinstance(p, str) else to_text(await self.eval(p)) for p in expr.parts]
            )
        if isinstance(expr, tree.ListLit):
            return [await self.eval(i) for i in expr.items]
        if isinstance(expr, tree.Var):
            return await self.lookup(expr)
        if isinstance(expr, tree.Record):
            return {f.name: await self.eval(f.value) for f in expr.fields}
        if isinstance(expr, tree.Call):
            return await self.start_call(expr)
        if isinstance(expr, tree.Func):
            return await self.func(expr)
        if isinstance(expr, tree.ToolCall):
            if self.run_tool is None:
                raise NanoRuntimeError("tools cannot be called here", expr.span)
            return await self.run_tool(expr, [await self.eval(a) for a in expr.args])
        if isinstance(expr, tree.Index):
            return index(await self.eval(expr.target), await self.eval(expr.index), expr)
        if isinstance(expr, tree.Not):
            return not truth(await self.eval(expr.operand), expr)
        return await self.binop(expr)

    async def start_call(self, expr: tree.Call) -> Any:
        args = {a.name: await self.eval(a.value) for a in expr.args}
        return await self.run_call(expr, args)

    async def func(self, expr: tree.Func) -> Any:
        if expr.name == "meta":  # meta(x): the metadata of gen x (not x's value)
            target = expr.args[0]
            if not isinstance(target, tree.Var):
                raise NanoRuntimeError("meta() takes the name of a gen variable", expr.span)
            return self.meta.get(target.name, {})
        args = [await self.eval(a) for a in expr.args]
        try:
            return BUILTINS[expr.name].fn(*args)
        except BuiltinError as exc:
            raise NanoRuntimeError(str(exc), expr.span) from None

    async def binop(self, expr: tree.BinOp) -> Any:
        left = await self.eval(expr.left)
        if expr.op == "and" and not truth(left, expr.left):
            return False
        if expr.op == "or" and truth(left, expr.left):
            return True
        right = await self.eval(expr.right)
        if expr.op in ("and", "or"):
            return truth(right, expr.right)
        return compare(expr, left, right)


def truth(value: Any, expr: tree.Expr) -> bool:
    """Conditions must be booleans: no implicit truthiness."""
    if not isinstance(value, bool):
        raise NanoRuntimeError(
            f"expected true or false, got {type_name(value)} {to_text(value)!r}", expr.span
        )
    return value


def index(target: Any, key: Any, expr: tree.Index) -> Any:
    try:
        if isinstance(target, dict) and isinstance(key, str):
            return target[key]
        if isinstance(target, (list, str)) and isinstance(key, int) and not isinstance(key, bool):
            return target[key]
    except (KeyError, IndexError):
        raise NanoRuntimeError(
            f"index {key!r} out of range for a {type_name(target)}", expr.span
        ) from None
    raise NanoRuntimeError(f"cannot index a {type_name(target)} with a {type_name(key)}", expr.span)


_ORDER = {
    "<": lambda a, b: a < b,
    ">": lambda a, b: a > b,
    "<=": lambda a, b: a <= b,
    ">=": lambda a, b: a >= b,
}


def compare(expr: tree.BinOp, left: Any, right: Any) -> Any:
    op = expr.op
    if op == "==":
        return left == right and type_name(left) == type_name(right)
    if op == "!=":
        return not (left == right and type_name(left) == type_name(right))
    if op in ("in", "not in"):
        return _contains(expr, left, right) == (op == "in")
    kinds = {type_name(left), type_name(right)}
    if op in _ORDER and len(kinds) == 1 and kinds <= {"number", "string"}:
        return _ORDER[op](left, right)
    if op == "+" and len(kinds) == 1 and kinds <= {"string", "list"}:
        return left + right
    if op in _ARITHMETIC and kinds == {"number"}:
        if op == "/" and right == 0:
            raise NanoRuntimeError("division by zero", expr.span)
        return _finite(expr, _ARITHMETIC[op], left, right)
    raise NanoRuntimeError(
        f"cannot apply {op!r} to {type_name(left)} and {type_name(right)}", expr.span
    )


_ARITHMETIC: dict[str, Callable[[Any, Any], Any]] = {
    "+": lambda a, b: a + b,
    "-": lambda a, b: a - b,
    "*": lambda a, b: a * b,
    "/": lambda a, b: a / b,
}


def _finite(expr: tree.BinOp, apply: Callable[[Any, Any], Any], left: Any, right: Any) -> Any:
    """``left op right``, refused when it overflows a float (values are JSON: no infinity)."""
    try:
        result = apply(left, right)
    except OverflowError:
        result = math.inf
    if isinstance(result, float) and not math.isfinite(result):
        raise NanoRuntimeError(f"{expr.op!r} overflows: the result is too large", expr.span)
    return result


def _contains(expr: tree.BinOp, item: Any, container: Any) -> bool:
    if isinstance(container, str) and isinstance(item, str):
        return item in container
    if isinstance(container, list):
        return any(item == x and type_name(item) == type_name(x) for x in container)
    if isinstance(container, dict) and isinstance(item, str):
        return item in container
    raise NanoRuntimeError(f"cannot test {type_name(item)} in {type_name(container)}", expr.span)
