"""nanolang: multi-call LLM programs (.nano files or decorated Python) compiled to request graphs.

See docs/language.md for the language and examples.
"""

from nanolang.api.decorators import (
    UntraceableError,
    assistant,
    assistant_begin,
    assistant_end,
    call,
    fmt,
    func,
    function,
    gen,
    gen_int,
    gen_string,
    image,
    join,
    program,
    select,
    system,
    system_begin,
    system_end,
    user,
    user_begin,
    user_end,
    video,
)
from nanolang.api.live import LiveProgram  # also registers live programs with the decorators
from nanolang.api.options import RunOptions
from nanolang.api.program import Program, compile, default_backend, load, set_backend
from nanolang.backends.base import Backend
from nanolang.check.checker import check
from nanolang.graph.builder import build_graph
from nanolang.graph.request_graph import Graph, Node, NodeKind
from nanolang.run.executor import Executor
from nanolang.run.records import CallRecord, InstanceState, Outcome
from nanolang.syntax.errors import (
    NanoCheckError,
    NanoError,
    NanoErrors,
    NanoRuntimeError,
    NanoSyntaxError,
    Span,
)
from nanolang.syntax.parser import parse

__all__ = [
    "Backend",
    "CallRecord",
    "Executor",
    "Graph",
    "InstanceState",
    "LiveProgram",
    "NanoCheckError",
    "NanoError",
    "NanoErrors",
    "NanoRuntimeError",
    "NanoSyntaxError",
    "Node",
    "NodeKind",
    "Outcome",
    "Program",
    "RunOptions",
    "Span",
    "UntraceableError",
    "assistant",
    "assistant_begin",
    "assistant_end",
    "build_graph",
    "call",
    "check",
    "compile",
    "default_backend",
    "fmt",
    "func",
    "function",
    "gen",
    "gen_int",
    "gen_string",
    "image",
    "join",
    "load",
    "parse",
    "program",
    "select",
    "set_backend",
    "system",
    "system_begin",
    "system_end",
    "user",
    "user_begin",
    "user_end",
    "video",
]
