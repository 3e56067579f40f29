"""Compiles a checked module to its request graph (see ``nanolang.graph.request_graph``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from nanolang.check.calls import walk
from nanolang.graph.request_graph import Graph, Node, NodeKind, Piece, ProgramGraph
from nanolang.syntax import tree
from nanolang.syntax.unparse import unparse


@dataclass
class _Flow:
    """Where compilation stands inside one program."""

    contexts: tuple[int, ...]
    pending: list[Piece] = field(default_factory=list)
    pending_data: list[int] = field(default_factory=list)
    producers: dict[str, tuple[int, ...]] = field(default_factory=dict)
    scope: tuple[str, ...] = ()
    role: str | None = None


class GraphBuilder:
    def __init__(self, module: tree.Module) -> None:
        self.module = module
        self.nodes: list[Node] = []

    def build(self) -> Graph:
        programs = []
        for program in self.module.programs:
            first = len(self.nodes)
            self.build_program(program)
            programs.append(
                ProgramGraph(program.name, signature(program), tuple(self.nodes[first:]))
            )
        return Graph(tuple(programs))

    def add(self, kind: NodeKind, label: str, flow: _Flow, span: object, **kw: object) -> int:
        node = Node(
            id=len(self.nodes),
            kind=kind,
            label=label,
            contexts=kw.get("contexts", flow.contexts),  # type: ignore[arg-type]
            data=tuple(sorted(set(kw.get("data", ())))),  # type: ignore[arg-type, call-overload]
            prompt=tuple(kw.get("prompt", flow.pending)),  # type: ignore[arg-type]
            params=tuple(kw.get("params", ())),  # type: ignore[arg-type]
            scope=flow.scope,
            span=span,  # type: ignore[arg-type]
        )
        self.nodes.append(node)
        return node.id

    def build_program(self, program: tree.ProgramDef) -> None:
        flow = _Flow(contexts=())
        start = self.add(NodeKind.START, program.name, flow, program.span, prompt=())
        flow.contexts = (start,)
        flow.producers = {p.name: (start,) for p in program.params}
        self.block(program.body, flow)

    def block(self, body: tuple[tree.Stmt, ...], flow: _Flow) -> None:
        for stmt in body:
            self.stmt(stmt, flow)

    def stmt(self, stmt: tree.Stmt, flow: _Flow) -> None:
        if isinstance(stmt, tree.Text):
            flow.pending_data += self.calls(stmt.text, flow) + self.reads(stmt.text, flow)
            if flow.pending and flow.pending[-1] == Piece(flow.role, ""):
                flow.pending.pop()
            flow.pending.append(Piece(flow.role, unparse(stmt.text)))
        elif isinstance(stmt, tree.Role):
            flow.role = stmt.role
            flow.pending.append(Piece(stmt.role, ""))
            self.block(stmt.body, flow)
            flow.role = None
        elif isinstance(stmt, tree.Capture):
            self.block(stmt.body, flow)  # the captured text: the body's requests and its context
            made = [n for n in tree.assigned_names(stmt.body) if n in flow.producers]
            data = tuple(i for n in made for i in flow.producers[n]) + flow.contexts
            flow.producers[stmt.name] = tuple(dict.fromkeys(data))
        elif isinstance(stmt, (tree.Gen, tree.Select)):
            self.request(stmt, flow)
        elif isinstance(stmt, tree.Let):
            flow.producers[stmt.name] = self.calls(stmt.value, flow) + self.reads(stmt.value, flow)
        elif isinstance(stmt, tree.Return):
            data = self.calls(stmt.value, flow) + self.reads(stmt.value, flow)
            # the text appended since the last request is part of the returned instance's context
            data += self.pending_reads(flow)
            self.add(NodeKind.RETURN, unparse(stmt.value), flow, stmt.span, data=data)
        elif isinstance(stmt, tree.Fork):
            label = unparse(stmt.count) + (f" as {stmt.index}" if stmt.index else "")
            self.loop(
                stmt, label + (" concat" if stmt.concat else ""), stmt.count, NodeKind.FORK, flow
            )
        elif isinstance(stmt, tree.While):
            self.loop(stmt, f"while {unparse(stmt.cond)}", stmt.cond, NodeKind.FOR, flow)
        elif isinstance(stmt, tree.For):
            label = f"{stmt.var} in {unparse(stmt.iterable)}"
            self.loop(stmt, label, stmt.iterable, NodeKind.FOR, flow)
        elif isinstance(stmt, tree.If):
            self.branch(stmt, flow)

    def request(self, stmt: tree.Gen | tree.Select, flow: _Flow) -> None:
        params = [(a.name, unparse(a.value)) for a in stmt.args]
        exprs: list[tree.Expr] = [a.value for a in stmt.args]
        kind = NodeKind.GEN
        if isinstance(stmt, tree.Select):
            params.insert(0, ("choices", unparse(stmt.choices)))
            exprs.append(stmt.choices)
            kind = NodeKind.SELECT
        data = self.pending_reads(flow) + tuple(i for e in exprs for i in self.reads(e, flow))
        node = self.add(kind, stmt.name, flow, stmt.span, params=params, data=data)
        self.flush(flow, node)
        flow.producers[stmt.name] = (node,)

    def loop(
        self,
        stmt: tree.Fork | tree.For | tree.While,
        label: str,
        expr: tree.Expr,
        kind: NodeKind,
        flow: _Flow,
    ) -> None:
        data = self.pending_reads(flow) + self.reads(expr, flow)
        head = self.add(kind, label, flow, stmt.span, data=data)
        self.flush(flow, head)
        inner = _Flow((head,), [], [], dict(flow.producers), (*flow.scope, f"{kind.value} {label}"))
        inner.role = flow.role  # a fork inside an open role block continues that turn
        if isinstance(stmt, tree.For):
            inner.producers[stmt.var] = (head,)
        if isinstance(stmt, tree.Fork) and stmt.index:
            inner.producers[stmt.index] = (head,)
        self.block(stmt.body, inner)
        names = [n for n in tree.assigned_names(stmt.body) if n in inner.producers]
        data = tuple(i for n in names for i in inner.producers[n]) + self.pending_reads(inner)
        ctx = (head,) if kind is NodeKind.FORK else inner.contexts
        join = self.add(
            NodeKind.JOIN,
            f"{kind.value} {label}",
            flow,
            stmt.span,
            contexts=ctx,
            prompt=inner.pending,
            data=data,
        )
        # a fork's text does not leak unless the fork is concat: then the context goes on after
        # every branch's text, which the join stands for
        leaks = not isinstance(stmt, tree.Fork) or stmt.concat
        flow.contexts = (join,) if leaks else (head,)
        for name in names:
            flow.producers[name] = (join,)

    def branch(self, stmt: tree.If, flow: _Flow) -> None:
        label = unparse(stmt.cond)
        data = self.pending_reads(flow) + self.reads(stmt.cond, flow)
        head = self.add(NodeKind.IF, label, flow, stmt.span, data=data)
        self.flush(flow, head)
        ends: list[int] = []
        for body, tag in ((stmt.then, f"if {label}"), (stmt.orelse, "else")):
            inner = _Flow((head,), [], [], dict(flow.producers), (*flow.scope, tag), flow.role)
            self.block(body, inner)
            end = self.add(
                NodeKind.JOIN,
                f"end {tag}",
                inner,
                stmt.span,
                prompt=inner.pending,
                data=self.pending_reads(inner),
            )
            ends.append(end)
            for name, ids in inner.producers.items():
                if flow.producers.get(name) != ids:
                    flow.producers[name] = tuple(sorted(set(flow.producers.get(name, ()) + ids)))
        flow.contexts = tuple(ends)

    def flush(self, flow: _Flow, node: int) -> None:
        flow.contexts = (node,)
        flow.pending = []
        flow.pending_data = []

    def calls(self, expr: tree.Expr, flow: _Flow) -> tuple[int, ...]:
        ids = []
        for call in [n for n in walk(expr) if isinstance(n, tree.Call)]:
            data = tuple(i for a in call.args for i in self.reads(a.value, flow))
            label = (
                f"{call.program}({', '.join(f'{a.name} = {unparse(a.value)}' for a in call.args)})"
            )
            ids.append(
                self.add(NodeKind.CALL, label, flow, call.span, contexts=(), prompt=(), data=data)
            )
        for tool in [n for n in walk(expr) if isinstance(n, tree.ToolCall)]:
            data = tuple(i for a in tool.args for i in self.reads(a, flow))
            label = f"tool {tool.tool}({', '.join(unparse(a) for a in tool.args)})"
            ids.append(
                self.add(NodeKind.CALL, label, flow, tool.span, contexts=(), prompt=(), data=data)
            )
        return tuple(ids)

    def reads(self, expr: tree.Expr, flow: _Flow) -> tuple[int, ...]:
        names = {n.name for n in walk(expr) if isinstance(n, tree.Var)}
        return tuple(i for name in sorted(names) for i in flow.producers.get(name, ()))

    def pending_reads(self, flow: _Flow) -> tuple[int, ...]:
        return tuple(flow.pending_data)


def signature(program: tree.ProgramDef) -> str:
    params = [
        p.name if p.default is None else f"{p.name} = {unparse(p.default)}" for p in program.params
    ]
    return f"{program.name}({', '.join(params)})"


def build_graph(module: tree.Module) -> Graph:
    """The request graph of a (checked) module."""
    return GraphBuilder(module).build()
