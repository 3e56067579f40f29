"""Runs one program instance as a coroutine; fork branches and independent calls are tasks.

The instance unfolds its request graph as values arrive: every ``gen`` and ``select`` becomes a
node (``runtime.program_ref.ProgramRef``) whose prompt extends its parent node's exact token
sequence (``Context``); the first requests of fork branches form one group, and the alternatives
of a ``select`` are one node. ``nodes`` records the graph the instance actually ran (the trace).
"""

from __future__ import annotations

import asyncio
import itertools
import time
import zlib
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nanolang.backends.base import BackendError
from nanolang.check.genargs import GEN_ARGS, SELECT_ARGS, argument_error
from nanolang.run.arguments import bind_args
from nanolang.run.chat import ChatPieces
from nanolang.run.choices import SelectError, select
from nanolang.run.context import Context, Pin
from nanolang.run.expressions import Evaluator
from nanolang.run.records import CallRecord, NodeRecord
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, NanoRuntimeError, Span

if TYPE_CHECKING:
    from nanolang.backends.base import Backend
    from runtime.outputs import RequestOutput
    from runtime.program_ref import ProgramRef
    from runtime.sampling_params import SamplingParams

_instance_keys = itertools.count()  # unique per process: one backend may serve many executors


class _Return(Exception):
    def __init__(self, value: Any) -> None:
        self.value = value


@dataclass
class Frame:
    """The state of one program activation (or one fork branch / loop iteration)."""

    program: tree.ProgramDef
    env: dict[str, Any]
    context: Context
    path: str
    tasks: list[asyncio.Task[Any]] = field(default_factory=list)


@dataclass(frozen=True)
class Session:
    """What every instance of one executor shares: the module, the backend, the run's seed, the
    chat template's pieces, and whether requests go to the runtime as graph nodes (``graph``;
    False: every call is an independent request, as a plain client would send it)."""

    module: tree.Module
    backend: Backend
    seed: int | None
    graph: bool = True
    chat: ChatPieces | None = None

    def chat_pieces(self) -> ChatPieces:
        if self.chat is None:
            object.__setattr__(self, "chat", ChatPieces(self.backend.tokenizer))
        assert self.chat is not None
        return self.chat


class Interpreter:
    """Executes the statements of one instance against the session's backend.

    The executor's interface: ``Interpreter(session, index)``, ``await run_program(program,
    args, path)`` (the value, or a ``NanoError``), then ``finish()`` exactly once (the runtime
    releases what it kept for the instance); ``records`` are its calls, ``nodes`` its graph.
    """

    def __init__(self, session: Session, instance: int) -> None:
        self.session = session
        self.instance = instance
        self.key = next(_instance_keys)  # the runtime's key for this instance
        self.records: list[CallRecord] = []
        self.nodes: list[NodeRecord] = []
        self._node_ids = itertools.count()
        self.start = time.perf_counter()

    @property
    def tokenizer(self) -> Any:
        return self.session.backend.tokenizer

    async def run_program(self, program: tree.ProgramDef, args: dict[str, Any], path: str) -> Any:
        frame = Frame(program, dict(args), Context(), path)
        try:
            await self.scope(program.body, frame)
        except _Return as ret:
            await self.settle(frame)
            return ret.value
        return None

    def finish(self) -> None:
        """The instance is over (value or error): let the runtime release its pins."""
        if self.session.graph:
            self.session.backend.end_instance(self.key)

    async def scope(self, body: tuple[tree.Stmt, ...], frame: Frame) -> None:
        """Run ``body`` then wait for the calls it started (their errors must surface)."""
        try:
            await self.block(body, frame)
        except _Return:
            raise
        except BaseException:
            for task in frame.tasks:
                task.cancel()
            raise
        await self.settle(frame)

    async def settle(self, frame: Frame) -> None:
        for task in frame.tasks:
            await task

    async def block(self, body: tuple[tree.Stmt, ...], frame: Frame) -> None:
        for stmt in body:
            await self.stmt(stmt, frame)

    def evaluator(self, frame: Frame) -> Evaluator:
        return Evaluator(frame.env, lambda call, args: self.call(call, args, frame))

    async def stmt(self, stmt: tree.Stmt, frame: Frame) -> None:
        ev = self.evaluator(frame)
        if isinstance(stmt, tree.Text):
            frame.context.append(await ev.eval(stmt.text))
        elif isinstance(stmt, tree.Role):
            chat = self.session.chat_pieces()
            frame.context.open_role(stmt.role, chat)
            await self.block(stmt.body, frame)
            frame.context.close_role(chat)
        elif isinstance(stmt, tree.Gen):
            await self.gen(stmt, frame)
        elif isinstance(stmt, tree.Select):
            await self.select(stmt, frame)
        elif isinstance(stmt, tree.Let):
            await self.let(stmt, frame, ev)
        elif isinstance(stmt, tree.Return):
            raise _Return(await ev.eval(stmt.value))
        elif isinstance(stmt, tree.If):
            cond = await ev.eval(stmt.cond)
            if not isinstance(cond, bool):
                raise NanoRuntimeError("an if condition must be true or false", stmt.cond.span)
            await self.block(stmt.then if cond else stmt.orelse, frame)
        elif isinstance(stmt, tree.Fork):
            await self.fork(stmt, frame, ev)
        elif isinstance(stmt, tree.For):
            await self.loop(stmt, frame, ev)

    async def let(self, stmt: tree.Let, frame: Frame, ev: Evaluator) -> None:
        if isinstance(stmt.value, tree.Call):
            # started now, awaited where it is read: independent calls run at the same time
            task = asyncio.ensure_future(ev.start_call(stmt.value))
            frame.tasks.append(task)
            frame.env[stmt.name] = task
        else:
            frame.env[stmt.name] = await ev.eval(stmt.value)

    async def call(self, call: tree.Call, args: dict[str, Any], frame: Frame) -> Any:
        target = self.session.module.get(call.program)
        if target is None:
            raise NanoRuntimeError(f"unknown program {call.program!r}", call.span)
        bound = bind_args(target, args, call.span)
        path = f"{frame.path}/call@{call.span.line}:{call.span.column}"
        return await self.run_program(target, bound, path)

    # fork and for

    async def fork(self, stmt: tree.Fork, frame: Frame, ev: Evaluator) -> None:
        count = await ev.eval(stmt.count)
        if isinstance(count, bool) or not isinstance(count, int) or count < 1:
            raise NanoRuntimeError(
                f"fork count must be a positive integer, got {count!r}", stmt.count.span
            )
        if frame.context.pending:  # the branches' shared prefix: tokenised once, identical
            self.prompt(frame, stmt.span)
        fork = self.fork_node(stmt, frame, count)
        branches = [
            Frame(
                frame.program,
                dict(frame.env),
                frame.context.copy(group=fork),
                f"{frame.path}/fork@{stmt.span.line}.{i}",
            )
            for i in range(count)
        ]
        try:
            async with asyncio.TaskGroup() as group:
                for branch in branches:
                    group.create_task(self.scope(stmt.body, branch))
        except* NanoError as errors:
            raise errors.exceptions[0] from None
        for branch in branches:  # their last nodes have no child: the runtime may drop them
            self.unpin(branch.context.move_on())
        await self.collect(stmt.body, branches, frame)

    async def loop(self, stmt: tree.For, frame: Frame, ev: Evaluator) -> None:
        items = await ev.eval(stmt.iterable)
        if not isinstance(items, list):
            raise NanoRuntimeError("for needs a list to iterate over", stmt.iterable.span)
        iterations = []
        for i, item in enumerate(items):
            env = {**frame.env, stmt.var: item}
            iteration = Frame(
                frame.program, env, frame.context, f"{frame.path}/for@{stmt.span.line}.{i}"
            )
            await self.scope(stmt.body, iteration)
            iterations.append(iteration)
        await self.collect(stmt.body, iterations, frame)

    async def collect(self, body: tuple[tree.Stmt, ...], frames: list[Frame], frame: Frame) -> None:
        """After a fork or for: each name set in the body becomes the list of its values."""
        for name in tree.assigned_names(body):
            if all(name in f.env for f in frames):
                frame.env[name] = [await _resolved(f.env[name]) for f in frames]

    # requests

    async def gen(self, stmt: tree.Gen, frame: Frame) -> None:
        from runtime.sampling_params import SamplingParams

        kwargs = await self.arguments(stmt.args, GEN_ARGS, frame)
        if self.session.seed is not None and "seed" not in kwargs:
            kwargs["seed"] = self.derived_seed(frame, stmt)
        try:
            params = SamplingParams(**kwargs)
        except ValueError as exc:
            raise NanoRuntimeError(str(exc), stmt.span) from None
        prompt = self.prompt(frame, stmt.span)
        node, ref = self.node_ref(frame.context)
        submitted = self.clock()
        output = await self.request(prompt, params, stmt, ref)
        frame.context.extend_generated(output, self.tokenizer)
        self.moved_to(frame.context, node)
        frame.env[stmt.name] = output.text
        self.record(frame, stmt, "gen", [output], prompt, kwargs, output.text, None)
        self.note_node(node, ref, "gen", stmt, frame, prompt, [output], submitted)

    async def select(self, stmt: tree.Select, frame: Frame) -> None:
        kwargs = await self.arguments(stmt.args, SELECT_ARGS, frame)
        choices = await self.evaluator(frame).eval(stmt.choices)
        check_choices(choices, stmt)
        prompt = self.prompt(frame, stmt.span)
        node, ref = self.node_ref(frame.context, alternatives=True)
        submitted = self.clock()
        generate = self.generate_fn(ref)
        try:
            chosen = await select(
                self.session.backend, prompt, choices, kwargs.get("method", "mean"), generate
            )
        except SelectError as exc:
            raise NanoRuntimeError(str(exc), stmt.span) from None
        except Exception as exc:
            raise NanoRuntimeError(f"select request failed: {exc!r}", stmt.span) from exc
        frame.context.extend_tokens(list(chosen.token_ids), chosen.choice)
        self.moved_to(frame.context, node)
        frame.env[stmt.name] = chosen.choice
        self.record(
            frame,
            stmt,
            "select",
            list(chosen.outputs),
            prompt,
            kwargs,
            chosen.choice,
            chosen.scores,
        )
        self.note_node(node, ref, "select", stmt, frame, prompt, list(chosen.outputs), submitted)

    # the graph handed to the runtime

    def clock(self) -> float:
        return time.perf_counter() - self.start

    def node_ref(self, context: Context, alternatives: bool = False) -> tuple[int, ProgramRef]:
        """A new node extending ``context``'s node; its request unpins what the context held.
        Alternatives (a ``select``) form their own group; a fork branch's first request joins
        the fork's group."""
        from runtime.program_ref import ProgramRef

        node = next(self._node_ids)
        group = node if alternatives else context.group
        context.group = None
        ref = ProgramRef(
            self.key, node, context.node, group, pin=True, unpin=context.move_on()
        )
        return node, ref

    def unpin(self, nodes: tuple[int, ...]) -> None:
        if nodes and self.session.graph:
            self.session.backend.unpin(self.key, nodes)

    def moved_to(self, context: Context, node: int) -> None:
        """``context`` now extends ``node``'s tokens, which the runtime keeps pinned."""
        context.node = node
        context.pin = Pin(node)

    def fork_node(self, stmt: tree.Fork, frame: Frame, count: int) -> int:
        node = next(self._node_ids)
        now = self.clock()
        self.nodes.append(
            NodeRecord(
                id=node, kind="fork", name=f"fork {count}", path=frame.path, line=stmt.span.line,
                parent=frame.context.node, group=None, prompt_tokens=frame.context.num_tokens,
                new_prompt_tokens=0, output_tokens=0, cached_tokens=0, submitted_s=now,
                finished_s=now, request_ids=(),
            )
        )  # fmt: skip
        return node

    def note_node(
        self,
        node: int,
        ref: ProgramRef,
        kind: str,
        stmt: tree.Gen | tree.Select,
        frame: Frame,
        prompt: list[int],
        outputs: list[RequestOutput],
        submitted: float,
    ) -> None:
        parent = next((n for n in self.nodes if n.id == ref.parent), None)
        base = parent.total_tokens if parent is not None else 0
        self.nodes.append(
            NodeRecord(
                id=node, kind=kind, name=stmt.name, path=frame.path, line=stmt.span.line,
                parent=ref.parent, group=ref.group if kind == "gen" else None,
                prompt_tokens=len(prompt), new_prompt_tokens=len(prompt) - base,
                output_tokens=sum(len(o.token_ids) for o in outputs) if kind == "gen" else 0,
                cached_tokens=sum(o.num_cached_tokens for o in outputs),
                submitted_s=submitted, finished_s=self.clock(),
                request_ids=tuple(o.request_id for o in outputs),
                total_tokens=frame.context.num_tokens,
                alternatives=tuple(len(o.prompt_token_ids) - len(prompt) for o in outputs)
                if kind == "select" else (),
            )
        )  # fmt: skip

    def generate_fn(self, ref: ProgramRef) -> Any:
        backend = self.session.backend
        if not self.session.graph:
            return backend.generate
        return lambda ids, params: backend.generate_node(ids, params, ref)

    async def arguments(
        self, args: tuple[tree.Arg, ...], allowed: dict, frame: Frame
    ) -> dict[str, Any]:
        values = {}
        for arg in args:
            value = await self.evaluator(frame).eval(arg.value)
            problem = argument_error(allowed, arg.name, value)
            if problem:
                raise NanoRuntimeError(problem, arg.value.span)
            values[arg.name] = value
        return values

    def prompt(self, frame: Frame, span: Span) -> list[int]:
        try:
            return frame.context.freeze(self.tokenizer)
        except BackendError as exc:  # a remote tokenizer that cannot be fetched
            raise NanoRuntimeError(str(exc), span) from None

    async def request(
        self, prompt: list[int], params: SamplingParams, stmt: tree.Gen, ref: ProgramRef
    ) -> RequestOutput:
        try:
            output = await self.generate_fn(ref)(prompt, params)
        except BackendError as exc:
            raise NanoRuntimeError(f"gen {stmt.name!r} failed: {exc}", stmt.span) from None
        except Exception as exc:
            raise NanoRuntimeError(f"gen {stmt.name!r} failed: {exc!r}", stmt.span) from exc
        if output.finish_reason == "abort":
            raise NanoRuntimeError(f"gen {stmt.name!r} was aborted by the engine", stmt.span)
        return output

    def derived_seed(self, frame: Frame, stmt: tree.Gen) -> int:
        key = (
            f"{self.session.seed}:{self.instance}:{frame.path}:{stmt.span.line}:{stmt.span.column}"
        )
        return zlib.crc32(key.encode())

    def record(
        self,
        frame: Frame,
        stmt: tree.Gen | tree.Select,
        kind: str,
        outputs: list[RequestOutput],
        prompt: list[int],
        params: dict[str, Any],
        text: str,
        scores: tuple[float, ...] | None,
    ) -> None:
        iterations = sorted({i for o in outputs for i in o.metrics.iterations})
        self.records.append(
            CallRecord(
                instance=self.instance,
                program=frame.program.name,
                kind=kind,
                name=stmt.name,
                line=stmt.span.line,
                path=frame.path,
                request_ids=tuple(o.request_id for o in outputs),
                prompt_token_ids=tuple(prompt),
                params=params,
                text=text,
                finish_reason=outputs[0].finish_reason,
                iterations=tuple(iterations),
                scores=scores,
            )
        )


def check_choices(choices: Any, stmt: tree.Select) -> None:
    if not isinstance(choices, list) or not choices:
        raise NanoRuntimeError(
            "select choices must be a non-empty list of strings", stmt.choices.span
        )
    if not all(isinstance(c, str) and c for c in choices):
        raise NanoRuntimeError("select choices must be non-empty strings", stmt.choices.span)
    if len(set(choices)) != len(choices):
        raise NanoRuntimeError("select choices must be distinct", stmt.choices.span)


async def _resolved(value: Any) -> Any:
    return await value if isinstance(value, asyncio.Future) else value
