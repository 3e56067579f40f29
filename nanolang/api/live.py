"""Decorated programs with real Python control flow: the function runs once per instance.

When a decorated function needs generated values themselves (``if s["x"] == "a"``, an f-string,
``forks = s.fork(n)``, ``var_scope``), it cannot be traced to a static graph. It then runs once
per instance, as SGLang does, in a worker thread with a ``LiveState`` ``s``: every ``s += ...``
becomes nanolang statements that the instance's ``Interpreter`` executes on the event loop (so
every ``gen``/``select``/``fork`` goes through the same executor and backend as a ``.nano``
program), and reading ``s["x"]`` waits for the statements before it. ``s += ...`` does not
wait: the state's statements run in order while Python goes on, so fork branches filled in a
Python loop run at the same time.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import inspect
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

from nanolang.api.current import current_state, live_factory, set_current_state
from nanolang.api.decorators import Pieces, RoleMark, Value, as_stmts, caller_span, to_expr
from nanolang.api.options import RunOptions
from nanolang.api.program import Program, default_backend
from nanolang.backends.base import Backend
from nanolang.graph.request_graph import Graph
from nanolang.run.arguments import bind_args
from nanolang.run.context import Context
from nanolang.run.executor import Executor
from nanolang.run.interpreter import Frame, Interpreter, Session
from nanolang.run.records import Outcome
from nanolang.run.transcript import plain_text
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, NanoRuntimeError, Span


class LiveState:
    """The ``s`` of a decorated function run for real (see the module docstring)."""

    def __init__(self, interpreter: Interpreter, frame: Frame, loop: asyncio.AbstractEventLoop):
        self.interpreter = interpreter
        self.frame = frame
        self.event_loop = loop
        self._last: concurrent.futures.Future[None] | None = None
        self._collecting: list[list[tree.Stmt]] = []
        self.children: list[LiveState] = []  # fork branches: finished before the instance is

    # appending and reading

    def __iadd__(self, item: Any) -> LiveState:
        if isinstance(item, RoleMark):
            self.mark_role(item)
            return self
        stmts = as_stmts(item, caller_span())
        if self._collecting:  # inside ``with s.fork(n)`` / ``with s.loop(...)``: a block
            self._collecting[-1].extend(stmts)
        else:
            self.execute(stmts)
        return self

    def execute(self, stmts: tuple[tree.Stmt, ...]) -> None:
        """Queue ``stmts`` after this state's earlier statements; returns at once."""
        self._queue(lambda: self.interpreter.block(stmts, self.frame))

    def _queue(self, run: Callable[[], Awaitable[None]]) -> None:
        previous = self._last

        async def step() -> None:
            if previous is not None:
                await asyncio.wrap_future(previous)
            await run()

        self._last = asyncio.run_coroutine_threadsafe(step(), self.event_loop)

    def mark_role(self, mark: RoleMark) -> None:
        """``s += nl.assistant_begin()`` opens a turn that stays open (what follows, forks
        included, continues it) until ``s += nl.assistant_end()``."""
        if self._collecting:
            raise NanoRuntimeError(
                f"{mark.label()} inside a `with` block: use `with s.{mark.role}():` there",
                mark.span,
            )

        async def run() -> None:
            context = self.frame.context
            if mark.begin and context.open:
                raise NanoRuntimeError(
                    f"roles do not nest: {mark.label()} while a {context.roles[-1]!r} message "
                    "is open",
                    mark.span,
                )
            if not mark.begin and not (context.open and context.roles[-1] == mark.role):
                raise NanoRuntimeError(
                    f"{mark.label()} without an open {mark.role!r} message", mark.span
                )
            if mark.begin:
                self.interpreter.open_role(self.frame, mark.role)
            else:
                self.interpreter.close_role(self.frame)

        self._queue(run)

    def sync(self) -> None:
        """Wait until every statement appended so far has run (raises the first error)."""
        if self._last is not None:
            self._last.result()

    def sync_all(self) -> None:
        """Wait for this state's statements and every fork branch's."""
        self.sync()
        for child in self.children:
            child.sync_all()

    def call(self, target: Program, args: dict[str, Any]) -> Any:
        """``nl.call(target, ...)`` with real values: run ``target`` now, in a fresh context."""
        span = caller_span(3)
        if isinstance(target, LiveProgram):
            bound = bind_args(target.definition, args, span)
            path = f"{self.frame.path}/call@{span.line}:{span.column}"
            frame = Frame(target.definition, dict(bound), Context(), path)
            return _call(target.fn, LiveState(self.interpreter, frame, self.event_loop), bound)
        outer = self.interpreter.session
        session = Session(
            target.module,
            outer.backend,
            outer.seed,
            outer.graph,
            defaults=outer.defaults,
            tools=outer.tools,
        )
        callee = Interpreter(session, self.interpreter.instance)
        bound = bind_args(target.definition, args, span)
        path = f"{self.frame.path}/call@{span.line}:{span.column}"
        run = callee.run_program(target.definition, bound, path)
        try:
            value = asyncio.run_coroutine_threadsafe(run, self.event_loop).result()
        finally:
            callee.finish()  # the runtime releases what it kept for the callee's nodes
        self.interpreter.records.extend(callee.records)
        return value

    def __getitem__(self, name: str) -> Any:
        if self._collecting:
            raise NanoRuntimeError(
                f"s[{name!r}] inside a `with s.fork(...)`/`with s.loop(...)` block has a value "
                "per branch; read it after the block, or use `forks = s.fork(n)`",
                caller_span(),
            )
        self.sync()
        if name not in self.frame.env:
            raise NanoRuntimeError(f"no variable {name!r} (yet) in this state", caller_span())
        value = self.frame.env[name]
        if isinstance(value, asyncio.Future):
            value = asyncio.run_coroutine_threadsafe(_await(value), self.event_loop).result()
        return value

    def __setitem__(self, name: str, value: Any) -> None:
        self.sync()
        self.frame.env[name] = self.value(value)

    def value(self, value: Any) -> Any:
        """A real value for ``value`` (a nanolang expression, e.g. ``nl.call``, is evaluated)."""
        if not isinstance(value, Value):
            return value
        evaluator = self.interpreter.evaluator(self.frame)
        return asyncio.run_coroutine_threadsafe(
            evaluator.eval(value.expr), self.event_loop
        ).result()

    def get_var(self, name: str) -> Any:
        return self[name]

    def set_var(self, name: str, value: Any) -> None:
        self[name] = value

    # transcript

    def text(self) -> str:
        self.sync()
        transcript = self.interpreter.transcript_of(self.frame)
        return transcript.text

    def messages(self) -> list[dict[str, str]]:
        self.sync()
        return list(self.interpreter.transcript_of(self.frame).messages)

    def get_meta_info(self, name: str) -> dict[str, Any]:
        """The metadata of gen ``name`` as this state sees it (a fork branch: its own gen's)."""
        self.sync()
        return self.frame.meta.get(name) or self.interpreter.meta.get(name, {})

    # blocks

    def _block(self, make: Callable[[tuple[tree.Stmt, ...]], tree.Stmt], value: Any = None) -> Any:
        return _LiveBlock(self, make, value)

    def user(self, *content: Any) -> _Role:
        return _Role(self, "user", content)

    def system(self, *content: Any) -> _Role:
        return _Role(self, "system", content)

    def assistant(self, *content: Any) -> _Role:
        return _Role(self, "assistant", content)

    def var_scope(self, name: str) -> _VarScope | _LiveBlock:
        """``with s.var_scope("x"):`` binds ``x`` to the text appended inside the block (inside
        a ``with s.fork(n)`` / ``s.loop`` block: a ``capture x { ... }`` statement of it)."""
        if self._collecting:
            span = caller_span()
            return _LiveBlock(self, lambda body: tree.Capture(name, body, span), None)
        return _VarScope(self, name)

    def fork(self, count: Any, index: str | None = None) -> Forks:
        """``forks = s.fork(n)`` (SGLang's shape: ``forks[i] += ...``, ``forks.join()``) or
        ``with s.fork(n):`` (a block: ``fork n { ... }``)."""
        span = caller_span()
        return Forks(self, count, index, span)

    def loop(self, name: str, items: Any) -> Any:
        span = caller_span()
        return self._block(
            lambda body: tree.For(name, _expr(items, span), body, span), Value(tree.Var(name, span))
        )


async def _await(value: asyncio.Future[Any]) -> Any:
    return await value


def _expr(value: Any, span: Span) -> tree.Expr:
    return to_expr(value, span)


class _LiveBlock:
    """``with`` blocks in a live run: the body's statements are collected into one statement
    (a ``fork`` or ``for``) that runs when the block closes."""

    def __init__(
        self, state: LiveState, make: Callable[[tuple[tree.Stmt, ...]], tree.Stmt], value: Any
    ) -> None:
        self.state = state
        self.make = make
        self.value = value

    def __enter__(self) -> Any:
        self.state._collecting.append([])
        return self.value

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        body = self.state._collecting.pop()
        if exc_type is None:
            stmt = self.make(tuple(body))
            if self.state._collecting:
                self.state._collecting[-1].append(stmt)
            else:
                self.state.execute((stmt,))


class _Role:
    """``s += s.user("text")`` or ``with s.user(): s += ...``."""

    def __init__(self, state: LiveState, role: str, content: tuple[Any, ...]) -> None:
        self.state = state
        self.role = role
        self.content = content
        self.span = caller_span(3)

    def pieces(self) -> Pieces:
        stmts = as_stmts(list(self.content), self.span)
        return Pieces((tree.Role(self.role, stmts, self.span),))

    def __enter__(self) -> None:
        interpreter, frame = self.state.interpreter, self.state.frame
        self.state.execute(())
        self.state.sync()
        interpreter.open_role(frame, self.role)
        if self.content:
            self.state.execute(as_stmts(list(self.content), self.span))

    def __exit__(self, *_: object) -> None:
        self.state.sync()
        self.state.interpreter.close_role(self.state.frame)


class _VarScope:
    def __init__(self, state: LiveState, name: str) -> None:
        self.state = state
        self.name = name
        self.start = 0

    def __enter__(self) -> None:
        self.state.sync()
        self.start = len(plain_text(self.state.frame.context))

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        self.state.sync()
        if exc_type is None:
            text = plain_text(self.state.frame.context)[self.start :]
            self.state.frame.env[self.name] = text


class Forks:
    """``s.fork(n)``: ``n`` branch states. ``forks += x`` appends to every branch (a callable
    ``x`` gets the branch index), ``forks[i]`` is one branch, ``join()`` waits for them all
    (``mode="concate_and_append"`` also appends each branch's new text to the parent)."""

    def __init__(self, parent: LiveState, count: Any, index: str | None, span: Span) -> None:
        self.parent = parent
        self.count = count
        self.index = index
        self.span = span
        self._branches: list[LiveState] | None = None
        self._starts: list[int] = []
        self._before: set[str] = set()

    # the block form

    def __enter__(self) -> None:
        span, index = self.span, self.index
        block = self.parent._block(
            lambda body: tree.Fork(_expr(self.count, span), body, span, index=index)
        )
        self._block = block
        block.__enter__()

    def __exit__(self, *exc: Any) -> None:
        self._block.__exit__(*exc)

    # the list form

    @property
    def branches(self) -> list[LiveState]:
        if self._branches is None:
            parent = self.parent
            count = parent.value(self.count)
            if isinstance(count, bool) or not isinstance(count, int) or count < 1:
                raise NanoRuntimeError(
                    f"fork count must be a positive integer, got {count!r}", self.span
                )
            parent.sync()
            self._before = set(parent.frame.env)
            frames = parent.interpreter.branch_frames(parent.frame, count, self.span)
            self._branches = [LiveState(parent.interpreter, f, parent.event_loop) for f in frames]
            parent.children.extend(self._branches)
            self._starts = [len(plain_text(f.context)) for f in frames]
        return self._branches

    def __len__(self) -> int:
        return len(self.branches)

    def __getitem__(self, i: int) -> LiveState:
        return self.branches[i]

    def __setitem__(self, i: int, state: LiveState) -> None:
        if state is not self.branches[i]:
            raise TypeError("forks[i] can only be extended with +=")

    def __iter__(self) -> Iterator[LiveState]:
        return iter(self.branches)

    def __iadd__(self, item: Any) -> Forks:
        span = caller_span()
        for i, branch in enumerate(self.branches):
            piece = item(i) if callable(item) else item
            branch.execute(as_stmts(piece, span))
        return self

    def join(self, mode: str = "gather_variable") -> None:
        if mode not in ("gather_variable", "concate_and_append"):
            raise ValueError(f"unknown join mode {mode!r}: gather_variable, concate_and_append")
        for branch in self.branches:
            branch.sync()
        # SGLang's gather: each variable the branches bound is the list of its values
        names = [n for n in self.branches[0].frame.env if n not in self._before]
        for name in names:
            if all(name in b.frame.env for b in self.branches):
                self.parent.frame.env[name] = [b.frame.env[name] for b in self.branches]
        if mode == "concate_and_append":
            texts = [
                plain_text(b.frame.context)[start:]
                for b, start in zip(self.branches, self._starts, strict=True)
            ]
            self.parent.execute(as_stmts("".join(texts), self.span))


def error_at(fn: Callable[..., Any], exc: BaseException) -> NanoError:
    """A Python exception raised by a live function, as an error at its line in that function."""
    if isinstance(exc, NanoError):
        return exc
    file = fn.__code__.co_filename
    frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename == file]
    span = Span(file, frames[-1].lineno or 1, 1) if frames else Span(file, 1, 1)
    return NanoRuntimeError(f"{type(exc).__name__}: {exc}", span)


class LiveProgram(Program):
    """A decorated function that runs once per instance with real values (module docstring).

    Its module holds one program with the function's parameters and no body (what ``bind_args``
    and the run options need); ``fn`` is the function and ``reason`` why it was not traced."""

    fn: Callable[..., Any]
    reason: str

    @classmethod
    def of(cls, fn: Callable[..., Any], reason: str) -> LiveProgram:
        signature = inspect.signature(fn)
        span = Span(fn.__code__.co_filename, fn.__code__.co_firstlineno, 1)
        params = []
        for name in list(signature.parameters)[1:]:
            default = signature.parameters[name].default
            value = None if default is inspect.Parameter.empty else to_expr(default, span)
            params.append(tree.Param(name, value, span))
        definition = tree.ProgramDef(fn.__name__, tuple(params), (), span)
        module = tree.Module((definition,), span.file, None)
        program = cls(module, fn.__name__)
        object.__setattr__(program, "fn", fn)
        object.__setattr__(program, "reason", reason)
        return program

    def graph(self) -> Graph:
        raise NanoRuntimeError(
            f"{self.name} has no static request graph: it runs with real values, because "
            f"{self.reason}"
        )

    def executor(self, options: RunOptions, **kw: Any) -> Executor:
        backend = options.backend or default_backend()
        return LiveExecutor(
            self, backend, seed=options.seed, defaults=options.defaults, tools=options.tools, **kw
        )


class LiveExecutor(Executor):
    """Runs instances of a ``LiveProgram``: each in a worker thread, its statements on the loop."""

    def __init__(self, program: LiveProgram, backend: Backend, **kw: Any) -> None:
        super().__init__(program.module, backend, **kw)
        self.live = program
        self.pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(self.max_concurrency, 256), thread_name_prefix="nanolang-live"
        )

    async def run(self, name: str, args: dict[str, Any], index: int = 0) -> Outcome:
        interpreter = self._start(index)
        try:
            bound = bind_args(self.live.definition, args)
            frame = Frame(self.live.definition, dict(bound), Context(), name)
            interpreter.root = frame
            state = LiveState(interpreter, frame, asyncio.get_running_loop())
            loop = asyncio.get_running_loop()
            value = await loop.run_in_executor(self.pool, _call, self.live.fn, state, bound)
        except NanoError as exc:
            exc.with_source(_read(exc.span.file))
            return self._failed(index, exc, interpreter)
        except Exception as exc:
            error = error_at(self.live.fn, exc)
            error.with_source(_read(error.span.file))
            return self._failed(index, error, interpreter)
        finally:
            interpreter.finish()
        return self._finished(index, value, interpreter)


def _call(fn: Callable[..., Any], state: LiveState, args: dict[str, Any]) -> Any:
    outer = current_state()
    set_current_state(state)
    try:
        result = fn(state, **args)
        state.sync_all()
        return state.value(result) if isinstance(result, Value) else result
    finally:
        set_current_state(outer)


def _read(file: str) -> str | None:
    path = Path(file)
    return path.read_text(encoding="utf-8") if path.is_file() else None


live_factory.append(LiveProgram.of)
