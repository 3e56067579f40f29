"""Static checks run before any request: scopes, structure, arguments, calls and constraints."""

from __future__ import annotations

from dataclasses import dataclass, replace

from nanolang.check.calls import call_errors, recursion_errors
from nanolang.check.constants import UNKNOWN, constant
from nanolang.check.genargs import GEN_ARGS, SELECT_ARGS, argument_error
from nanolang.check.inference import type_errors
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoCheckError, NanoErrors, Span
from nanolang.values.functions import BUILTINS


@dataclass(frozen=True)
class Binding:
    """A variable in scope: where it was bound, whether it surely is, and its literal source."""

    span: Span
    certain: bool
    value: tree.Expr | None = None


Scope = dict[str, Binding]


@dataclass(frozen=True)
class Where:
    """The enclosing constructs of a statement."""

    role: tree.Role | None = None
    loop: tree.Fork | tree.For | tree.While | None = None
    capture: tree.Capture | None = None
    loop_role: tree.Role | None = None  # the role block open where ``loop`` began


class Checker:
    """Collects every static error of a module (not only the first)."""

    def __init__(self, module: tree.Module) -> None:
        self.module = module
        self.errors: list[NanoCheckError] = []

    def error(self, message: str, span: Span) -> None:
        self.errors.append(NanoCheckError(message, span, self.module.source_for(span.file)))

    def run(self) -> list[NanoCheckError]:
        if not self.module.programs:
            self.error(
                f"{self.module.file} defines no program: expected 'program NAME(...) {{ ... }}'",
                Span(self.module.file, 1, 1),
            )
        seen: dict[str, tree.ProgramDef] = {}
        for program in self.module.programs:
            if program.name in seen:
                first = seen[program.name].span
                self.error(
                    f"duplicate program {program.name!r} (first defined at {first})", program.span
                )
            seen.setdefault(program.name, program)
            self.check_program(program)
        for message, span in recursion_errors(self.module):
            self.error(message, span)
        self.check_tools()
        reported = {e.span for e in self.errors}
        for message, span in type_errors(self.module):
            if span not in reported:  # one error per position
                self.error(message, span)
        return sorted(self.errors, key=lambda e: (e.span.line, e.span.column))

    def check_program(self, program: tree.ProgramDef) -> None:
        scope: Scope = {}
        for param in program.params:
            if param.name in scope:
                self.error(f"duplicate parameter {param.name!r}", param.span)
                continue
            if param.default is not None and constant(param.default) is UNKNOWN:
                self.error("a parameter default must be a literal value", param.default.span)
            scope[param.name] = Binding(param.span, True, param.default)
        self.check_block(program.body, scope, Where())

    # statements

    def check_tools(self) -> None:
        seen: dict[str, tree.ToolDecl] = {}
        for tool in self.module.tools:
            first = seen.setdefault(tool.name, tool)
            if first is not tool and first != tool:
                self.error(
                    f"tool {tool.name!r} is declared twice (first at {first.span})", tool.span
                )
            if len(set(tool.params)) != len(tool.params):
                self.error(f"tool {tool.name!r} has duplicate parameters", tool.span)

    def check_block(self, body: tuple[tree.Stmt, ...], scope: Scope, where: Where) -> None:
        for i, stmt in enumerate(body):
            self.check_stmt(stmt, scope, where)
            if isinstance(stmt, (tree.Return, tree.Break)) and i + 1 < len(body):
                kind = "return" if isinstance(stmt, tree.Return) else "break"
                self.error(f"unreachable statement after {kind}", body[i + 1].span)
                return

    def check_stmt(self, stmt: tree.Stmt, scope: Scope, where: Where) -> None:
        if isinstance(stmt, tree.Text):
            self.check_expr(stmt.text, scope)
        elif isinstance(stmt, tree.Role):
            self.check_role(stmt, scope, where)
        elif isinstance(stmt, tree.Gen):
            self.check_args(stmt.args, GEN_ARGS, scope)
            self._constraint_pair(stmt)
            self.bind(stmt.name, stmt.span, scope)
        elif isinstance(stmt, tree.Select):
            self.check_args(stmt.args, SELECT_ARGS, scope)
            self.check_expr(stmt.choices, scope)
            self.check_choices(stmt.choices, scope)
            self.bind(stmt.name, stmt.span, scope)
        elif isinstance(stmt, tree.Let):
            self.check_expr(stmt.value, scope)
            self.bind(stmt.name, stmt.span, scope, stmt.value)
        elif isinstance(stmt, tree.Capture):
            self.check_block(stmt.body, scope, replace(where, capture=stmt))
            self.bind(stmt.name, stmt.span, scope)
        elif isinstance(stmt, tree.Return):
            if where.capture is not None:
                self.error("return is not allowed inside a capture block", stmt.span)
            elif where.loop is not None:
                kind = type(where.loop).__name__.lower()
                self.error(f"return is not allowed inside a {kind} body", stmt.span)
            self.check_expr(stmt.value, scope)
        elif isinstance(stmt, tree.Break):
            if where.capture is not None:
                self.error("break is not allowed inside a capture block", stmt.span)
            elif where.role is not None and where.role is not where.loop_role:
                self.error("break is not allowed inside a role block", stmt.span)
            elif isinstance(where.loop, tree.Fork):
                message = "break inside a fork body: break ends a for or while loop, not a fork"
                self.error(message, stmt.span)
            elif not isinstance(where.loop, (tree.For, tree.While)):
                self.error("break outside a loop: break ends a for or while loop", stmt.span)
        else:
            self.check_control(stmt, scope, where)

    def check_role(self, stmt: tree.Role, scope: Scope, where: Where) -> None:
        if where.capture is not None and where.role is None:
            self.error(
                f"a {stmt.role!r} block is not allowed inside capture (put the capture inside "
                "the role block: it takes plain text)",
                stmt.span,
            )
        if where.role is not None:
            opened = where.role
            self.error(
                f"roles do not nest: {stmt.role!r} inside {opened.role!r} (opened at "
                f"{opened.span.line}:{opened.span.column}); close the {opened.role!r} block first",
                stmt.span,
            )
        self.check_block(stmt.body, scope, replace(where, role=stmt))

    def check_control(self, stmt: tree.Stmt, scope: Scope, where: Where) -> None:
        # inside a role block, control statements continue the open turn (fork branches each
        # continue the message); only roles themselves and a break out of the block are refused
        if isinstance(stmt, tree.Fork):
            self.check_expr(stmt.count, scope)
            count = constant(stmt.count)
            if count is not UNKNOWN and (
                isinstance(count, bool) or not isinstance(count, int) or count < 1
            ):
                self.error("fork count must be a positive integer", stmt.count.span)
            self.check_loop_body(stmt, scope, where, stmt.index)
        elif isinstance(stmt, tree.While):
            self.check_expr(stmt.cond, scope)
            cond = constant(stmt.cond)
            if cond is not UNKNOWN and not isinstance(cond, bool):
                self.error("a while condition must be true or false", stmt.cond.span)
            if cond is True and not _breaks(stmt.body):
                self.error("while true without a break never ends", stmt.span)
            self.check_loop_body(stmt, scope, where, None)
        elif isinstance(stmt, tree.For):
            self.check_expr(stmt.iterable, scope)
            items = constant(stmt.iterable)
            if items is not UNKNOWN and not isinstance(items, list):
                self.error("for needs a list to iterate over", stmt.iterable.span)
            self.check_loop_body(stmt, scope, where, stmt.var)
        elif isinstance(stmt, tree.If):
            cond = constant(stmt.cond)
            if cond is not UNKNOWN and not isinstance(cond, bool):
                self.error("an if condition must be true or false", stmt.cond.span)
            self.check_if(stmt, scope, where)

    def check_loop_body(
        self, stmt: tree.Fork | tree.For | tree.While, scope: Scope, where: Where, var: str | None
    ) -> None:
        inner = dict(scope)
        if var is not None:
            self.bind(var, stmt.span, inner)
        self.check_block(stmt.body, inner, replace(where, loop=stmt, loop_role=where.role))
        for name in tree.assigned_names(stmt.body):
            if name in inner and name not in scope:
                # after a for/while: the list of the iterations that bound it (maybe empty)
                certain = inner[name].certain or not isinstance(stmt, tree.Fork)
                scope[name] = Binding(inner[name].span, certain)

    def check_if(self, stmt: tree.If, scope: Scope, where: Where) -> None:
        self.check_expr(stmt.cond, scope)
        then, orelse = dict(scope), dict(scope)
        self.check_block(stmt.then, then, where)
        self.check_block(stmt.orelse, orelse, where)
        for name in {*then, *orelse} - set(scope):
            a, b = then.get(name), orelse.get(name)
            certain = a is not None and b is not None and a.certain and b.certain
            scope[name] = Binding((a or b).span, certain)  # type: ignore[union-attr]

    def bind(self, name: str, span: Span, scope: Scope, value: tree.Expr | None = None) -> None:
        if name in BUILTINS:
            self.error(f"{name!r} is a built-in function and cannot name a variable", span)
        if name in scope:
            first = scope[name].span
            self.error(
                f"variable {name!r} is already defined (at {first.line}:{first.column})", span
            )
            return
        scope[name] = Binding(span, True, value)

    # arguments and choices

    def check_args(self, args: tuple[tree.Arg, ...], allowed: dict, scope: Scope) -> None:
        seen: set[str] = set()
        for arg in args:
            self.check_expr(arg.value, scope)
            if arg.name in seen:
                self.error(f"duplicate argument {arg.name!r}", arg.span)
            seen.add(arg.name)
            value = constant(arg.value)
            if arg.name not in allowed or value is not UNKNOWN:
                problem = argument_error(allowed, arg.name, value)
                if problem:
                    span = arg.span if arg.name not in allowed else arg.value.span
                    self.error(problem, span)

    def _constraint_pair(self, stmt: tree.Gen) -> None:
        names = [a.name for a in stmt.args]
        if "regex" in names and "json_schema" in names:
            self.error("give at most one of regex and json_schema", stmt.span)
        elif "dtype" in names and ("regex" in names or "json_schema" in names):
            self.error("give dtype or a regex/json_schema, not both (dtype is a regex)", stmt.span)
        given = {a.name: constant(a.value) for a in stmt.args}
        if given.get("max_tokens") == 0:  # what the interpreter refuses, caught before a run
            extra: list[str] = [n for n in ("dtype", "regex", "json_schema") if n in given]
            if given.get("n", 1) not in (1, UNKNOWN):
                extra.insert(0, "n")
            if extra:
                self.error(
                    "a gen with max_tokens = 0 generates nothing: it takes no n, dtype, regex "
                    f"or json_schema (given: {', '.join(extra)})",
                    stmt.span,
                )
        for arg in stmt.args:
            if arg.name == "regex" and isinstance(arg.value, tree.Str):
                self._regex_holes(arg.value)

    def _regex_holes(self, pattern: tree.Str) -> None:
        """``"[0-9]{2}"`` would interpolate 2: almost surely a repetition meant literally."""
        for part in pattern.parts:
            if isinstance(part, tree.Num):
                self.error(
                    f"{{{part.value}}} in a regex string is an interpolation, not a repetition; "
                    f'write {{{{{part.value}}}}} or use a raw string r"..."',
                    part.span,
                )

    def check_choices(self, expr: tree.Expr, scope: Scope) -> None:
        source = expr
        if isinstance(expr, tree.Var) and expr.name in scope and scope[expr.name].value is not None:
            source = scope[expr.name].value  # type: ignore[assignment]
        value = constant(source)
        if value is UNKNOWN:
            return
        if not isinstance(value, list):
            self.error("select choices must be a list of strings", expr.span)
            return
        if not value:
            self.error("select has no choices: expected a non-empty list of strings", expr.span)
        items = source.items if isinstance(source, tree.ListLit) else ()
        seen: set[str] = set()
        for i, choice in enumerate(value):
            span = items[i].span if items else expr.span
            if not isinstance(choice, str) or choice == "":
                self.error("select choices must be non-empty strings", span)
            elif choice in seen:
                self.error(f"duplicate select choice {choice!r}", span)
            seen.add(choice) if isinstance(choice, str) else None

    # expressions

    def check_expr(self, expr: tree.Expr, scope: Scope) -> None:
        if isinstance(expr, tree.Var):
            self.check_var(expr, scope)
        elif isinstance(expr, tree.Func):
            self.check_func(expr)
        elif isinstance(expr, tree.Call):
            for message, span in call_errors(self.module, expr):
                self.error(message, span)
        elif isinstance(expr, tree.ToolCall):
            self.check_tool_call(expr)
        elif isinstance(expr, tree.Record):
            seen: set[str] = set()
            for field in expr.fields:
                if field.name in seen:
                    self.error(f"duplicate record field {field.name!r}", field.span)
                seen.add(field.name)
        for child in _children(expr):
            self.check_expr(child, scope)

    def check_var(self, expr: tree.Var, scope: Scope) -> None:
        binding = scope.get(expr.name)
        if binding is None:
            self.error(f"undefined variable {expr.name!r}", expr.span)
        elif not binding.certain:
            at = f"{binding.span.line}:{binding.span.column}"
            self.error(
                f"variable {expr.name!r} is possibly undefined: it is only assigned on some paths "
                f"(at {at}); assign it on every branch before using it",
                expr.span,
            )

    def check_tool_call(self, expr: tree.ToolCall) -> None:
        tool = self.module.tool(expr.tool)
        if tool is None:
            known = ", ".join(t.name for t in self.module.tools) or "none"
            self.error(
                f"unknown tool {expr.tool!r}: declare it with `tool {expr.tool}(...)` "
                f"(declared tools: {known})",
                expr.span,
            )
        elif len(expr.args) != len(tool.params):
            self.error(
                f"tool {tool.name}({', '.join(tool.params)}) takes {len(tool.params)} "
                f"argument(s), got {len(expr.args)}",
                expr.span,
            )

    def check_func(self, expr: tree.Func) -> None:
        builtin = BUILTINS.get(expr.name)
        program = self.module.get(expr.name)
        if builtin is None and program is not None:
            args = ", ".join(f"{p.name} = ..." for p in program.params)
            self.error(
                f"{expr.name!r} is a program, not a function: run it with "
                f"`call {expr.name}({args})` (arguments by name)",
                expr.span,
            )
            return
        if builtin is None:
            known = ", ".join(sorted(BUILTINS))
            self.error(f"unknown function {expr.name!r}; expected one of {known}", expr.span)
            return
        if expr.name in ("image", "video"):
            self.error(
                f"{expr.name}s are not supported: nanolang's runtime serves text-only models "
                "(no vision model)",
                expr.span,
            )
            return
        if expr.name == "meta" and not (len(expr.args) == 1 and isinstance(expr.args[0], tree.Var)):
            self.error("meta() takes the name of a gen variable, e.g. meta(answer)", expr.span)
            return
        n = len(expr.args)
        if not builtin.min_args <= n <= builtin.max_args:
            want = str(builtin.min_args)
            if builtin.max_args != builtin.min_args:
                want = f"{builtin.min_args} to {builtin.max_args}"
            self.error(f"{expr.name}() takes {want} argument(s), got {n}", expr.span)


def _children(expr: tree.Expr) -> tuple[tree.Expr, ...]:
    if isinstance(expr, tree.Str):
        return tuple(p for p in expr.parts if not isinstance(p, str))
    if isinstance(expr, tree.ListLit):
        return expr.items
    if isinstance(expr, tree.Index):
        return (expr.target, expr.index)
    if isinstance(expr, tree.Func):
        return expr.args
    if isinstance(expr, tree.BinOp):
        return (expr.left, expr.right)
    if isinstance(expr, tree.Not):
        return (expr.operand,)
    if isinstance(expr, tree.Call):
        return tuple(a.value for a in expr.args)
    if isinstance(expr, tree.ToolCall):
        return expr.args
    if isinstance(expr, tree.Record):
        return tuple(f.value for f in expr.fields)
    return ()


def _breaks(body: tuple[tree.Stmt, ...]) -> bool:
    """Whether ``body`` holds a ``break`` of its own loop (not of a nested one)."""
    for stmt in body:
        if isinstance(stmt, tree.Break):
            return True
        if isinstance(stmt, tree.If) and (_breaks(stmt.then) or _breaks(stmt.orelse)):
            return True
    return False


def check(module: tree.Module) -> list[NanoCheckError]:
    """Every static error of ``module``, sorted by position (empty when it is valid)."""
    return Checker(module).run()


def check_or_raise(module: tree.Module) -> None:
    """Raise NanoErrors listing every static error, if there is any."""
    errors = check(module)
    if errors:
        raise NanoErrors(list(errors))
