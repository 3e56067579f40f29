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
from nanolang.records import CallRecord, Outcome
from nanolang.tracing import assistant, fmt, gen, program, select, system, user

__all__ = [
    "Backend",
    "CallRecord",
    "Executor",
    "Graph",
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
    "check",
    "compile",
    "default_backend",
    "fmt",
    "gen",
    "load",
    "parse",
    "program",
    "select",
    "set_backend",
    "system",
    "user",
]
