"""The AST back to canonical .nano source (used for golden parse tests and round trips)."""

from __future__ import annotations

from nanolang.syntax import tree
from nanolang.syntax.unparse import unparse, unparse_args

INDENT = "    "


def format_module(module: tree.Module) -> str:
    """Canonical source of ``module``: parsing it again gives the same AST (spans aside)."""
    own = [p for p in module.programs if p.span.file == module.file]
    head = [f"import {unparse(tree.Str((i.path,), i.span))}\n" for i in module.imports]
    own_tools = [t for t in module.tools if t.span.file == module.file]
    head += [f"tool {t.name}({', '.join(t.params)})\n" for t in own_tools]
    body = "\n".join(format_program(p) for p in own)
    return "".join(head) + ("\n" if head and body else "") + body


def format_program(program: tree.ProgramDef) -> str:
    params = ", ".join(
        p.name if p.default is None else f"{p.name} = {unparse(p.default)}" for p in program.params
    )
    return f"program {program.name}({params}) {_block(program.body, 0)}\n"


def _block(body: tuple[tree.Stmt, ...], depth: int) -> str:
    if not body:
        return "{ }"
    inner = "".join(f"{INDENT * (depth + 1)}{_stmt(s, depth + 1)}\n" for s in body)
    return "{\n" + inner + INDENT * depth + "}"


def _stmt(stmt: tree.Stmt, depth: int) -> str:
    if isinstance(stmt, tree.Text):
        return unparse(stmt.text)
    if isinstance(stmt, tree.Role):
        return f"{stmt.role} {_inline(stmt.body, depth)}"
    if isinstance(stmt, tree.Gen):
        return f"gen {stmt.name}{_args(stmt.args)}"
    if isinstance(stmt, tree.Select):
        return f"select {stmt.name}{_args(stmt.args)} from {unparse(stmt.choices)}"
    if isinstance(stmt, tree.Fork):
        index = f" as {stmt.index}" if stmt.index else ""
        concat = " concat" if stmt.concat else ""
        return f"fork {unparse(stmt.count)}{index}{concat} {_block(stmt.body, depth)}"
    if isinstance(stmt, tree.While):
        return f"while {unparse(stmt.cond)} {_block(stmt.body, depth)}"
    if isinstance(stmt, tree.Break):
        return "break"
    if isinstance(stmt, tree.Capture):
        return f"capture {stmt.name} {_block(stmt.body, depth)}"
    if isinstance(stmt, tree.For):
        return f"for {stmt.var} in {unparse(stmt.iterable)} {_block(stmt.body, depth)}"
    if isinstance(stmt, tree.If):
        text = f"if {unparse(stmt.cond)} {_block(stmt.then, depth)}"
        if len(stmt.orelse) == 1 and isinstance(stmt.orelse[0], tree.If):
            return f"{text} else {_stmt(stmt.orelse[0], depth)}"
        return f"{text} else {_block(stmt.orelse, depth)}" if stmt.orelse else text
    if isinstance(stmt, tree.Let):
        return f"let {stmt.name} = {unparse(stmt.value)}"
    return f"return {unparse(stmt.value)}"


def _inline(body: tuple[tree.Stmt, ...], depth: int) -> str:
    """A role's body: a lone string as is, ``{ a b }`` on one line when short."""
    if len(body) == 1 and isinstance(body[0], tree.Text):
        return unparse(body[0].text)
    if all(isinstance(s, (tree.Text, tree.Gen, tree.Select)) for s in body):
        text = "{ " + " ".join(_stmt(s, depth) for s in body) + " }"
        if len(text) < 80:
            return text
    return _block(body, depth)


def _args(args: tuple[tree.Arg, ...]) -> str:
    return f"({unparse_args(args)})" if args else ""
