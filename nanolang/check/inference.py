"""A small static type inference: str, int, float, bool, list, record and generated text.

Types are inferred from literals, parameter defaults, ``gen`` (generated text, or its ``dtype``),
``select`` (text), built-ins and operators; anything else is ``any`` and never an error. What is
reported is what would certainly fail at run time, after model calls were spent: ``"abc" - 1``,
``[1, 2] + "s"``, ``not "yes"``, ``if 3``, arithmetic on generated text without a conversion.
"""

from __future__ import annotations

from nanolang.check.constants import UNKNOWN, constant
from nanolang.syntax import tree
from nanolang.syntax.errors import Span
from nanolang.values.functions import BUILTINS

ANY, STR, GEN, INT, FLOAT, NUMBER, BOOL, LIST, RECORD = (
    "any", "str", "generated text", "int", "float", "number", "bool", "list", "record",
)  # fmt: skip
NUMERIC = {INT, FLOAT, NUMBER}
TEXT = {STR, GEN}
DTYPE = {"int": INT, "float": FLOAT, "bool": BOOL, "str": GEN}

Env = dict[str, str]
Errors = list[tuple[str, Span]]


def type_errors(module: tree.Module) -> Errors:
    """Every certain type error of ``module``'s programs."""
    errors: Errors = []
    for program in module.programs:
        env = {p.name: literal_type(p.default) if p.default is not None else ANY
               for p in program.params}  # fmt: skip
        _Types(errors).block(program.body, env)
    return errors


def literal_type(expr: tree.Expr) -> str:
    value = constant(expr)
    if value is UNKNOWN:
        return ANY
    return _value_type(value)


def _value_type(value: object) -> str:
    if isinstance(value, bool):
        return BOOL
    if isinstance(value, int):
        return INT
    if isinstance(value, float):
        return FLOAT
    if isinstance(value, str):
        return STR
    return LIST if isinstance(value, list) else ANY


class _Types:
    def __init__(self, errors: Errors) -> None:
        self.errors = errors

    def error(self, message: str, span: Span) -> None:
        self.errors.append((message, span))

    # statements

    def block(self, body: tuple[tree.Stmt, ...], env: Env) -> None:
        for stmt in body:
            self.stmt(stmt, env)

    def stmt(self, stmt: tree.Stmt, env: Env) -> None:
        if isinstance(stmt, tree.Text):
            self.expr(stmt.text, env)
        elif isinstance(stmt, tree.Role):
            self.block(stmt.body, env)
        elif isinstance(stmt, tree.Capture):
            self.block(stmt.body, env)
            env[stmt.name] = STR
        elif isinstance(stmt, tree.Gen):
            env[stmt.name] = self.gen_type(stmt, env)
        elif isinstance(stmt, tree.Select):
            for arg in stmt.args:
                self.expr(arg.value, env)
            if self.expr(stmt.choices, env) not in (ANY, LIST):
                self.error("select choices must be a list of strings", stmt.choices.span)
            env[stmt.name] = STR
        elif isinstance(stmt, tree.Let):
            env[stmt.name] = self.expr(stmt.value, env)
        elif isinstance(stmt, tree.Return):
            self.expr(stmt.value, env)
        elif isinstance(stmt, (tree.If, tree.While)):
            self.condition(stmt.cond, env, "an if" if isinstance(stmt, tree.If) else "a while")
            self.branches(stmt, env)
        elif isinstance(stmt, (tree.Fork, tree.For)):
            self.loop(stmt, env)

    def gen_type(self, stmt: tree.Gen, env: Env) -> str:
        dtype, n = GEN, 1
        for arg in stmt.args:
            self.expr(arg.value, env)
            value = constant(arg.value)
            if arg.name == "dtype" and isinstance(value, str):
                dtype = DTYPE.get(value, ANY)
            if arg.name == "n" and isinstance(value, int) and not isinstance(value, bool):
                n = value
        return LIST if n > 1 else dtype

    def condition(self, cond: tree.Expr, env: Env, what: str) -> None:
        kind = self.expr(cond, env)
        if kind not in (ANY, BOOL):
            self.error(
                f"{what} condition must be true or false, not {_a(kind)} (no implicit truthiness: "
                "compare it, e.g. len(xs) > 0)",
                cond.span,
            )

    def branches(self, stmt: tree.If | tree.While, env: Env) -> None:
        if isinstance(stmt, tree.While):
            inner = dict(env)
            self.block(stmt.body, inner)
            for name in tree.assigned_names(stmt.body):
                env.setdefault(name, LIST)
            return
        then, orelse = dict(env), dict(env)
        self.block(stmt.then, then)
        self.block(stmt.orelse, orelse)
        for name in {*then, *orelse} - set(env):
            env[name] = then.get(name) if then.get(name) == orelse.get(name) else ANY  # type: ignore[assignment]

    def loop(self, stmt: tree.Fork | tree.For, env: Env) -> None:
        inner = dict(env)
        if isinstance(stmt, tree.Fork):
            count = self.expr(stmt.count, env)
            if count not in (ANY, INT, NUMBER):
                self.error(f"fork count must be an integer, not {_a(count)}", stmt.count.span)
            if stmt.index:
                inner[stmt.index] = INT
        else:
            items = self.expr(stmt.iterable, env)
            if items not in (ANY, LIST):
                self.error(f"for needs a list to iterate over, not {_a(items)}", stmt.iterable.span)
            inner[stmt.var] = ANY
        self.block(stmt.body, inner)
        for name in tree.assigned_names(stmt.body):
            env.setdefault(name, LIST)

    # expressions

    def expr(self, expr: tree.Expr, env: Env) -> str:
        if isinstance(expr, tree.Str):
            for part in expr.parts:
                if not isinstance(part, str):
                    self.expr(part, env)
            return STR
        if isinstance(expr, (tree.Num, tree.Bool)):
            return _value_type(expr.value)
        if isinstance(expr, tree.ListLit):
            for item in expr.items:
                self.expr(item, env)
            return LIST
        if isinstance(expr, tree.Record):
            for f in expr.fields:
                self.expr(f.value, env)
            return RECORD
        if isinstance(expr, tree.Var):
            return env.get(expr.name, ANY)
        if isinstance(expr, tree.Index):
            return self.index(expr, env)
        if isinstance(expr, tree.Func):
            return self.func(expr, env)
        if isinstance(expr, tree.Not):
            operand = self.expr(expr.operand, env)
            if operand not in (ANY, BOOL):
                self.error(f"'not' needs true or false, not {_a(operand)}", expr.span)
            return BOOL
        if isinstance(expr, tree.BinOp):
            return self.binop(expr, env)
        if isinstance(expr, tree.Call):
            for a in expr.args:
                self.expr(a.value, env)
        if isinstance(expr, tree.ToolCall):
            for arg in expr.args:
                self.expr(arg, env)
        return ANY

    def index(self, expr: tree.Index, env: Env) -> str:
        target, key = self.expr(expr.target, env), self.expr(expr.index, env)
        if target in NUMERIC or target == BOOL:
            self.error(f"cannot index {_a(target)}", expr.span)
        elif target in TEXT and key not in (ANY, INT):
            self.error(f"a string is indexed by an integer, not {_a(key)}", expr.index.span)
        elif target == LIST and key not in (ANY, INT):
            self.error(f"a list is indexed by an integer, not {_a(key)}", expr.index.span)
        return STR if target in TEXT else ANY

    def func(self, expr: tree.Func, env: Env) -> str:
        kinds = [self.expr(a, env) for a in expr.args]
        builtin = BUILTINS.get(expr.name)
        if builtin is None:
            return ANY
        wants_text = {"lower", "upper", "strip", "split", "replace", "startswith", "endswith"}
        if expr.name in wants_text and kinds and kinds[0] not in (ANY, *TEXT):
            self.error(f"{expr.name}() needs a string, not {_a(kinds[0])}", expr.args[0].span)
        if expr.name == "len" and kinds and kinds[0] not in (ANY, *TEXT, LIST, RECORD):
            self.error(f"len() needs a string, list or record, not {_a(kinds[0])}", expr.span)
        returns = builtin.returns
        return {"number": NUMBER, "list": LIST, "record": RECORD}.get(returns, returns)

    def binop(self, expr: tree.BinOp, env: Env) -> str:
        left, right = self.expr(expr.left, env), self.expr(expr.right, env)
        op = expr.op
        if op in ("and", "or"):
            for side, kind in ((expr.left, left), (expr.right, right)):
                if kind not in (ANY, BOOL):
                    self.error(f"'{op}' needs true or false, not {_a(kind)}", side.span)
            return BOOL
        if op in ("==", "!="):
            return BOOL
        if ANY in (left, right):
            return BOOL if op in ("<", ">", "<=", ">=", "in", "not in") else ANY
        if op in ("in", "not in"):
            ok = (
                right == LIST
                or (right in TEXT and left in TEXT)
                or (right == RECORD and left in TEXT)
            )
            if not ok:
                self.error(f"cannot test {_a(left)} {op} {_a(right)}", expr.span)
            return BOOL
        same = _family(left) == _family(right)
        if op in ("<", ">", "<=", ">="):
            if not (same and _family(left) in ("number", "text")):
                self.error(f"cannot compare {_a(left)} {op} {_a(right)}", expr.span)
            return BOOL
        if op == "+" and same and _family(left) in ("number", "text", LIST):
            return _sum_type(left, right)
        if op in ("-", "*") and same and _family(left) == "number":
            return _sum_type(left, right)
        if op == "/" and same and _family(left) == "number":
            return FLOAT
        hint = ""
        if GEN in (left, right) and ({left, right} & NUMERIC or op in ("-", "*", "/")):
            hint = "; generated text is a string: convert it first, e.g. int(x) or float(x)"
        self.error(f"cannot apply '{op}' to {_a(left)} and {_a(right)}{hint}", expr.span)
        return ANY


def _family(kind: str) -> str:
    if kind in NUMERIC:
        return "number"
    return "text" if kind in TEXT else kind


def _sum_type(left: str, right: str) -> str:
    if left == right:
        return STR if left == GEN else left
    if _family(left) == "text":
        return STR
    return NUMBER


def _a(kind: str) -> str:
    article = "an" if kind[0] in "aeiou" else "a"
    return {"str": "a string", "bool": "a boolean"}.get(kind, f"{article} {kind}")
