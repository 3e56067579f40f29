"""The request graph: every generation, selection and call of a module, with its edges.

Nodes are the calls a program makes (plus the control points around them). A node's
``contexts`` are the nodes whose context it extends (its prompt is theirs plus ``prompt``);
``data`` are the nodes whose values it reads. Fork branches share the fork node as their prefix.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass

from nanolang.syntax.errors import Span


class NodeKind(enum.Enum):
    START = "start"
    GEN = "gen"
    SELECT = "select"
    CALL = "call"
    FORK = "fork"
    FOR = "for"
    IF = "if"
    JOIN = "join"
    RETURN = "return"


@dataclass(frozen=True)
class Piece:
    """Text appended to the context: ``role`` is None outside role blocks."""

    role: str | None
    text: str


@dataclass(frozen=True)
class Node:
    id: int
    kind: NodeKind
    label: str
    contexts: tuple[int, ...]
    data: tuple[int, ...]
    prompt: tuple[Piece, ...]
    params: tuple[tuple[str, str], ...]
    scope: tuple[str, ...]
    span: Span


@dataclass(frozen=True)
class ProgramGraph:
    name: str
    signature: str
    nodes: tuple[Node, ...]


@dataclass(frozen=True)
class Graph:
    """The request graphs of every program of a module, nodes numbered across the module."""

    programs: tuple[ProgramGraph, ...]

    @property
    def nodes(self) -> tuple[Node, ...]:
        return tuple(n for p in self.programs for n in p.nodes)
