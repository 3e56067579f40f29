"""nanolang: multi-call LLM programs (.nano files or decorated Python) compiled to request graphs.

See docs/language.md for the language and examples.
"""

from nanolang.backend import Backend
from nanolang.checker import check
from nanolang.errors import (
    NanoCheckError,
    NanoError,
    NanoErrors,
    NanoRuntimeError,
    NanoSyntaxError,
    Span,
)
from nanolang.executor import Executor
from nanolang.graph import Graph, Node, NodeKind
from nanolang.graph_builder import build_graph
from nanolang.parser import parse
from nanolang.program import Program, compile, default_backend, load, set_backend
from nanolang.records import CallRecord, InstanceState, Outcome
from nanolang.tracing import assistant, call, fmt, func, gen, join, program, select, system, user

__all__ = [
    "Backend",
    "CallRecord",
    "Executor",
    "Graph",
    "InstanceState",
    "NanoCheckError",
    "NanoError",
    "NanoErrors",
    "NanoRuntimeError",
    "NanoSyntaxError",
    "Node",
    "NodeKind",
    "Outcome",
    "Program",
    "Span",
    "assistant",
    "build_graph",
    "call",
    "check",
    "compile",
    "default_backend",
    "fmt",
    "func",
    "gen",
    "join",
    "load",
    "parse",
    "program",
    "select",
    "set_backend",
    "system",
    "user",
]
