"""The request graph as numbered text (golden tests), JSON, and Graphviz dot."""

from __future__ import annotations

import json
from typing import Any

from nanolang.graph.request_graph import Graph, Node, NodeKind


def _ids(ids: tuple[int, ...]) -> str:
    return ", ".join(f"%{i}" for i in ids)


def _piece(role: str | None, text: str) -> str:
    return f"{role}: {text}" if role and text else (f"<{role}>" if role else text)


def to_text(graph: Graph) -> str:
    """One numbered line per node, indented lines for its prompt, parameters and scope."""
    lines: list[str] = []
    for program in graph.programs:
        lines.append(f"program {program.signature}")
        for node in program.nodes:
            lines.extend(_node_lines(node))
        lines.append("")
    return "\n".join(lines)


def _node_lines(node: Node) -> list[str]:
    head = f"  %{node.id} = {node.kind.value} {node.label}"
    if node.contexts:
        head += f"  ctx {_ids(node.contexts)}"
    if node.data:
        head += f"  data {_ids(node.data)}"
    lines = [head]
    for piece in node.prompt:
        lines.append(f"      + {_piece(piece.role, piece.text)}")
    if node.params:
        lines.append("      params " + ", ".join(f"{k} = {v}" for k, v in node.params))
    if node.scope:
        lines.append("      in " + " / ".join(node.scope))
    return lines


def to_json(graph: Graph) -> dict[str, Any]:
    """A JSON-serialisable dict: programs, each with its nodes and their edges."""
    return {
        "programs": [
            {"name": p.name, "signature": p.signature, "nodes": [_node_json(n) for n in p.nodes]}
            for p in graph.programs
        ]
    }


def _node_json(node: Node) -> dict[str, Any]:
    return {
        "id": node.id,
        "kind": node.kind.value,
        "label": node.label,
        "contexts": list(node.contexts),
        "data": list(node.data),
        "prompt": [{"role": p.role, "text": p.text} for p in node.prompt],
        "params": dict(node.params),
        "scope": list(node.scope),
        "line": node.span.line,
        "column": node.span.column,
    }


def to_json_text(graph: Graph) -> str:
    return json.dumps(to_json(graph), indent=2)


_SHAPES = {NodeKind.GEN: "box", NodeKind.SELECT: "box", NodeKind.CALL: "component"}


def to_dot(graph: Graph) -> str:
    """Graphviz: a cluster per program; solid context edges, dashed data edges."""
    out = ["digraph nanolang {", "  rankdir=TB;", '  node [fontname="monospace"];']
    for k, program in enumerate(graph.programs):
        out.append(f"  subgraph cluster_{k} {{")
        out.append(f"    label={json.dumps(program.signature)};")
        for node in program.nodes:
            shape = _SHAPES.get(node.kind, "ellipse")
            label = json.dumps(f"%{node.id} {node.kind.value} {node.label}")
            out.append(f"    n{node.id} [label={label}, shape={shape}];")
        out.append("  }")
    for node in graph.nodes:
        out.extend(f"  n{c} -> n{node.id};" for c in node.contexts)
        out.extend(f"  n{d} -> n{node.id} [style=dashed];" for d in node.data)
    out.append("}")
    return "\n".join(out) + "\n"
