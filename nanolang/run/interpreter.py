"""Runs one program instance as a coroutine; fork branches and independent calls are tasks.

The instance unfolds its request graph as values arrive: every ``gen`` and ``select`` becomes a
node (``runtime.program_ref.ProgramRef``) whose prompt extends its parent node's exact token
sequence (``Context``); the first requests of fork branches form one group, and the alternatives
of a ``select`` are one node. ``nodes`` records the graph the instance actually ran (the trace).
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time
import zlib
from collections import ChainMap
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nanolang.backends.base import BackendError
from nanolang.check.genargs import DEFAULT_MAX_TOKENS, GEN_ARGS, SELECT_ARGS, argument_error
from nanolang.run import gen_options
from nanolang.run.arguments import bind_args
from nanolang.run.chat import ChatPieces
from nanolang.run.choices import (
    SelectError,
    choices_token_ids,
    scored_in_one_request,
    select,
)
from nanolang.run.context import Context, Pin
from nanolang.run.expressions import Evaluator
from nanolang.run.leaves import leaf_requests
from nanolang.run.records import CallRecord, NodeRecord, Transcript
from nanolang.run.token_cache import TokenCache
from nanolang.run.transcript import context_messages, context_text
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, NanoRuntimeError, Span
from nanolang.values.kinds import is_value, normalise

if TYPE_CHECKING:
    from nanolang.backends.base import Backend
    from runtime.outputs import RequestOutput
    from runtime.program_ref import ProgramRef
    from runtime.sampling_params import SamplingParams

_instance_keys = itertools.count()  # unique per process: one backend may serve many executors


MAX_WHILE_ITERATIONS = 1000  # a while loop that has run this often is stopped with an error


class _Break(Exception):
    pass


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
    # meta(x) as this frame sees it: a fork branch reads its own gens' metadata (copied at the
    # fork), loop iterations share their frame's
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)


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
    defaults: dict[str, Any] = field(default_factory=dict)
    tools: dict[str, Callable[..., Any]] = field(default_factory=dict)
    token_cache: TokenCache | None = None
    # id(program) -> (program, its leaves): the program is kept, so its id is not reused
    leaf_cache: dict[int, tuple[tree.ProgramDef, frozenset[int]]] = field(default_factory=dict)

    def leaves(self, program: tree.ProgramDef) -> frozenset[int]:
        """The ids of ``program``'s requests that no later request of their context extends
        (``leaves.leaf_requests``; found once per program)."""
        entry = self.leaf_cache.get(id(program))
        if entry is None:
            entry = self.leaf_cache[id(program)] = (program, leaf_requests(program))
        return entry[1]

    def tokens(self) -> TokenCache:
        """The backend tokenizer's ``TokenCache`` (shared by every instance; made afresh if
        the backend's tokenizer object changes)."""
        tokenizer = self.backend.tokenizer
        if self.token_cache is None or self.token_cache.tokenizer is not tokenizer:
            object.__setattr__(self, "token_cache", TokenCache(tokenizer))
        assert self.token_cache is not None
        return self.token_cache

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
        self.root: Frame | None = None  # the instance's own program (not a called one)
        # streaming: called with (gen name or None, text delta) as the root context grows
        self.on_text: Callable[[str | None, str], None] | None = None
        self.streamed = ""
        self.meta: dict[str, dict[str, Any]] = {}  # per gen name: logprob metadata
        # the instance's estimated peak KV tokens (the executor's footprint check), when known:
        # its nodes tell the runtime (ProgramRef.peak_tokens)
        self.peak_tokens: int | None = None

    @property
    def tokenizer(self) -> Any:
        return self.session.backend.tokenizer

    async def run_program(self, program: tree.ProgramDef, args: dict[str, Any], path: str) -> Any:
        frame = Frame(program, dict(args), Context(), path)
        if self.root is None:
            self.root = frame
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

    def transcript(self) -> Transcript | None:
        """The root context as text and messages, and the root variables (calls resolved)."""
        return None if self.root is None else self.transcript_of(self.root)

    def transcript_of(self, frame: Frame) -> Transcript:
        env = {
            k: v.result() if isinstance(v, asyncio.Future) and v.done() else v
            for k, v in frame.env.items()
        }
        variables = {k: v for k, v in env.items() if not isinstance(v, asyncio.Future)}
        return Transcript(
            context_text(frame.context, self.session.backend.tokenizer),
            tuple(context_messages(frame.context)),
            variables,
            dict(self.meta),
        )

    async def scope(self, body: tuple[tree.Stmt, ...], frame: Frame) -> None:
        """Run ``body`` then wait for the calls it started (their errors must surface)."""
        try:
            await self.block(body, frame)
        except (_Return, _Break):
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
        meta = ChainMap(frame.meta, self.meta)  # the branch's own gens first
        return Evaluator(
            frame.env, lambda call, args: self.call(call, args, frame), self.tool, meta
        )

    async def tool(self, call: tree.ToolCall, args: list[Any]) -> Any:
        """``call tool NAME(args)``: the host's Python function, in a worker thread (it may
        block); its result must be a nanolang value (other objects become their ``str``)."""
        fn = self.session.tools.get(call.tool)
        if fn is None:
            raise NanoRuntimeError(
                f"tool {call.tool!r} was not given to this run (run(..., tools=...))", call.span
            )
        try:
            result = await asyncio.to_thread(fn, *args)
        except Exception as exc:
            raise NanoRuntimeError(
                f"tool {call.tool!r} failed: {type(exc).__name__}: {exc}", call.span
            ) from None
        return normalise(result) if is_value(result) else str(result)

    async def stmt(self, stmt: tree.Stmt, frame: Frame) -> None:
        await self.run_stmt(stmt, frame)
        if self.streams(frame):
            self.emit(frame.context.text, None)

    def streams(self, frame: Frame) -> bool:
        """Whether ``frame`` extends the instance's own context (the root program's, loop
        iterations and branches of an ``if`` included; not a fork branch's copy nor a called
        program's context), which is what streaming shows."""
        root = self.root
        return self.on_text is not None and root is not None and frame.context is root.context

    def emit(self, text: str, name: str | None) -> None:
        """Stream the root context's growth: the part of ``text`` not yet sent. Text already
        sent is not taken back (a stop string a partial output showed and the final text cut):
        streaming goes on from where the two agree."""
        if self.on_text is None:
            return
        common = _common_prefix(text, self.streamed)
        if common < len(self.streamed) and len(text) <= len(self.streamed):
            return  # nothing new beyond what was sent
        delta = text[common:]
        self.streamed = text
        if delta:
            self.on_text(name, delta)

    async def run_stmt(self, stmt: tree.Stmt, frame: Frame) -> None:
        ev = self.evaluator(frame)
        if isinstance(stmt, tree.Text):
            frame.context.append(await ev.eval(stmt.text))
        elif isinstance(stmt, tree.Role):
            self.open_role(frame, stmt.role)
            await self.block(stmt.body, frame)
            self.close_role(frame)
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
        elif isinstance(stmt, tree.While):
            await self.while_loop(stmt, frame, ev)
        elif isinstance(stmt, tree.Break):
            raise _Break()
        elif isinstance(stmt, tree.Capture):
            start = len(frame.context.text)
            await self.block(stmt.body, frame)
            frame.env[stmt.name] = frame.context.text[start:]

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
        branches = self.branch_frames(frame, count, stmt.span, fork)
        if stmt.index is not None:
            for i, branch in enumerate(branches):
                branch.env[stmt.index] = i
        start = len(frame.context.text)
        try:
            async with asyncio.TaskGroup() as group:
                for branch in branches:
                    group.create_task(self.branch(stmt.body, branch))
        except* NanoError as errors:
            raise errors.exceptions[0] from None
        await self.collect(stmt.body, branches, frame)
        if stmt.concat:  # each branch's new text, in branch order, joins the parent's context
            frame.context.append("".join(b.context.text[start:] for b in branches))

    async def branch(self, body: tuple[tree.Stmt, ...], frame: Frame) -> None:
        """Run one fork branch; once it is done its last node has no child, so the runtime may
        drop that pin at once, not when the slowest sibling is done."""
        await self.scope(body, frame)
        self.unpin(frame.context.move_on())

    def branch_frames(
        self, frame: Frame, count: int, span: Span, fork: int | None = None
    ) -> list[Frame]:
        """``count`` fork branches of ``frame``: copies of its context (sharing its tokens;
        their first requests join the ``fork`` node's group) and of its variables."""
        return [
            Frame(
                frame.program,
                dict(frame.env),
                frame.context.copy(group=fork),
                f"{frame.path}/fork@{span.line}.{i}",
                meta=dict(frame.meta),
            )
            for i in range(count)
        ]

    def open_role(self, frame: Frame, role: str) -> None:
        frame.context.open_role(role, self.session.chat_pieces())

    def close_role(self, frame: Frame) -> None:
        frame.context.close_role(self.session.chat_pieces())

    async def loop(self, stmt: tree.For, frame: Frame, ev: Evaluator) -> None:
        items = await ev.eval(stmt.iterable)
        if not isinstance(items, list):
            raise NanoRuntimeError("for needs a list to iterate over", stmt.iterable.span)
        iterations = []
        for i, item in enumerate(items):
            env = {**frame.env, stmt.var: item}
            iteration = Frame(
                frame.program,
                env,
                frame.context,
                f"{frame.path}/for@{stmt.span.line}.{i}",
                meta=frame.meta,
            )
            iterations.append(iteration)
            if not await self.iterate(stmt.body, iteration):
                break
        await self.collect(stmt.body, iterations, frame, partial=True)

    async def while_loop(self, stmt: tree.While, frame: Frame, ev: Evaluator) -> None:
        iterations: list[Frame] = []
        while True:
            cond = await ev.eval(stmt.cond)
            if not isinstance(cond, bool):
                raise NanoRuntimeError("a while condition must be true or false", stmt.cond.span)
            if not cond:
                break
            if len(iterations) >= MAX_WHILE_ITERATIONS:
                raise NanoRuntimeError(
                    f"while loop stopped after {MAX_WHILE_ITERATIONS} iterations", stmt.span
                )
            path = f"{frame.path}/while@{stmt.span.line}.{len(iterations)}"
            iteration = Frame(frame.program, dict(frame.env), frame.context, path, meta=frame.meta)
            iterations.append(iteration)
            if not await self.iterate(stmt.body, iteration):
                break
        await self.collect(stmt.body, iterations, frame, partial=True)

    async def iterate(self, body: tuple[tree.Stmt, ...], iteration: Frame) -> bool:
        """Run one loop iteration; False when it ended with ``break``."""
        try:
            await self.scope(body, iteration)
        except _Break:
            await self.settle(iteration)
            return False
        return True

    async def collect(
        self, body: tuple[tree.Stmt, ...], frames: list[Frame], frame: Frame, partial: bool = False
    ) -> None:
        """After a fork or loop: each name set in the body becomes the list of its values
        (``partial``, for loops that may ``break``: of the iterations that set it)."""
        for name in tree.assigned_names(body):
            if partial:
                frame.env[name] = [await _resolved(f.env[name]) for f in frames if name in f.env]
            elif all(name in f.env for f in frames):
                frame.env[name] = [await _resolved(f.env[name]) for f in frames]

    # requests

    async def gen(self, stmt: tree.Gen, frame: Frame) -> None:
        given = await self.arguments(stmt.args, GEN_ARGS, frame)
        kwargs, options = gen_options.split({**self.session.defaults, **given}, stmt.span)
        kwargs.setdefault("max_tokens", DEFAULT_MAX_TOKENS)
        if kwargs["max_tokens"] == 0:
            await self.gen_prefill(stmt, frame, kwargs, options)
            return
        if options.n > 1:
            await self.gen_n(stmt, frame, kwargs, options)
            return
        if self.session.seed is not None and "seed" not in kwargs:
            kwargs["seed"] = self.derived_seed(frame, stmt)
        params = gen_options.sampling_params(kwargs, options, stmt.span)
        prompt = self.prompt(frame, stmt.span)
        node, ref = self.node_ref(frame.context, pin=self.pins(frame, stmt))
        submitted = self.clock()
        progress = None
        streaming = self.streams(frame)
        if streaming:
            before = frame.context.text
            self.emit(before, None)  # the prompt text so far, before the gen's own tokens
            # a partial output may end inside a multi-byte character: hold that back
            progress = lambda out: self.emit(before + out.text.rstrip("\ufffd"), stmt.name)  # noqa: E731
        output = await self.request(prompt, params, stmt, ref, progress)
        frame.context.extend_generated(output, self.tokenizer)
        if streaming:
            self.emit(frame.context.text, stmt.name)
        self.moved_to(frame.context, node, ref.pin)
        frame.env[stmt.name] = gen_options.convert(options.dtype, output.text, stmt.span)
        self.meta[stmt.name] = frame.meta[stmt.name] = gen_options.meta_info(
            output, options, self.tokenizer
        )
        self.record(frame, stmt, "gen", [output], prompt, kwargs, output.text, None)
        self.note_node(node, ref, "gen", stmt, frame, prompt, [output], submitted)

    async def gen_n(
        self, stmt: tree.Gen, frame: Frame, kwargs: dict[str, Any], options: gen_options.GenOptions
    ) -> None:
        """``gen x(n = k)``: k samples of the same prompt, submitted together; ``x`` is the list
        of their values and nothing is appended to the context (which sample would it be?)."""
        prompt = self.prompt(frame, stmt.span)
        requests = []
        for i in range(options.n):
            sample = dict(kwargs)
            if "seed" in sample:
                sample["seed"] = sample["seed"] + i
            elif self.session.seed is not None:
                sample["seed"] = self.derived_seed(frame, stmt) + i
            params = gen_options.sampling_params(sample, options, stmt.span)
            requests.append(self.request(prompt, params, stmt))
        outputs = await asyncio.gather(*requests)
        frame.env[stmt.name] = [
            gen_options.convert(options.dtype, o.text, stmt.span) for o in outputs
        ]
        samples = [gen_options.meta_info(o, options, self.tokenizer) for o in outputs]
        self.meta[stmt.name] = frame.meta[stmt.name] = {"samples": samples}
        texts = [o.text for o in outputs]
        self.record(frame, stmt, "gen", list(outputs), prompt, kwargs, json.dumps(texts), None)

    async def gen_prefill(
        self, stmt: tree.Gen, frame: Frame, kwargs: dict[str, Any], options: gen_options.GenOptions
    ) -> None:
        """``gen x(max_tokens = 0)`` (SGLang's prefill-only request): ``x`` is "" and nothing is
        appended; ``meta(x)`` has the prompt's counts and, with ``top_logprobs_num = k``,
        ``output_top_logprobs[0]``: the k likeliest next tokens at the prompt's end. It runs as
        one greedy token that is dropped (logprobs are the raw model's, so sampling arguments
        change nothing), a plain request outside the graph, like ``n`` samples."""
        if (
            options.n > 1
            or options.dtype is not None
            or "regex" in kwargs
            or "json_schema" in kwargs
        ):
            raise NanoRuntimeError(
                "a gen with max_tokens = 0 generates nothing: it takes no n, dtype, regex or "
                "json_schema",
                stmt.span,
            )
        probe = {"max_tokens": 1, "temperature": 0.0, "logprobs": bool(kwargs.get("logprobs"))}
        params = gen_options.sampling_params(probe, options, stmt.span)
        prompt = self.prompt(frame, stmt.span)
        output = await self.request(prompt, params, stmt)
        if options.top_logprobs_num and not getattr(output, "top_logprobs", None):
            raise NanoRuntimeError(
                f"gen {stmt.name!r} with max_tokens = 0 asks for the next token's top "
                f"{options.top_logprobs_num} logprobs, which this backend does not return",
                stmt.span,
            )
        frame.env[stmt.name] = ""
        self.meta[stmt.name] = frame.meta[stmt.name] = gen_options.prefill_meta(
            output, options, self.tokenizer
        )
        self.record(frame, stmt, "gen", [output], prompt, kwargs, "", None)

    async def select(self, stmt: tree.Select, frame: Frame) -> None:
        kwargs = await self.arguments(stmt.args, SELECT_ARGS, frame)
        choices = await self.evaluator(frame).eval(stmt.choices)
        check_choices(choices, stmt)
        prompt = self.prompt(frame, stmt.span)
        # alternatives sent as requests of their own form a group; one request needs none
        try:
            ids = choices_token_ids(self.session.backend, choices, self.session.tokens())
        except SelectError as exc:
            raise NanoRuntimeError(str(exc), stmt.span) from None
        one = scored_in_one_request(self.session.backend, prompt, ids)
        node, ref = self.node_ref(frame.context, self.pins(frame, stmt), alternatives=not one)
        submitted = self.clock()
        generate = self.generate_fn(ref)
        try:
            chosen = await select(
                self.session.backend,
                prompt,
                choices,
                kwargs.get("method", "mean"),
                generate,
                self.session.tokens(),
            )
        except SelectError as exc:
            raise NanoRuntimeError(str(exc), stmt.span) from None
        except Exception as exc:
            raise NanoRuntimeError(f"select request failed: {exc!r}", stmt.span) from exc
        frame.context.extend_tokens(list(chosen.token_ids), chosen.choice)
        self.moved_to(frame.context, node, ref.pin)
        frame.env[stmt.name] = chosen.choice
        self.meta[stmt.name] = frame.meta[stmt.name] = {
            "choices": list(choices),
            "scores": list(chosen.scores),
            "input_token_logprobs": [
                [[lp, tid, self.tokenizer.decode([tid])] for lp, tid in per_choice]
                for per_choice in chosen.token_logprobs
            ],
        }
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
        sizes = tuple(len(per_choice) for per_choice in chosen.token_logprobs)
        self.note_node(
            node, ref, "select", stmt, frame, prompt, list(chosen.outputs), submitted, sizes
        )

    # the graph handed to the runtime

    def clock(self) -> float:
        return time.perf_counter() - self.start

    def pins(self, frame: Frame, stmt: tree.Gen | tree.Select) -> bool:
        """Whether ``stmt``'s node is pinned: unless it is a leaf (no later request of its
        context can extend it, ``leaves.leaf_requests``)."""
        return id(stmt) not in self.session.leaves(frame.program)

    def node_ref(
        self, context: Context, pin: bool = True, alternatives: bool = False
    ) -> tuple[int, ProgramRef]:
        """A new node extending ``context``'s node (kept pinned after it finishes when ``pin``);
        its request unpins what the context held. Alternatives (a ``select``) form their own
        group; a fork branch's first request joins the fork's group."""
        from runtime.program_ref import ProgramRef

        node = next(self._node_ids)
        group = node if alternatives else context.group
        context.group = None
        ref = ProgramRef(
            self.key, node, context.node, group, pin=pin, unpin=context.move_on(),
            peak_tokens=self.peak_tokens,
        )  # fmt: skip
        return node, ref

    def unpin(self, nodes: tuple[int, ...]) -> None:
        if nodes and self.session.graph:
            self.session.backend.unpin(self.key, nodes)

    def moved_to(self, context: Context, node: int, pinned: bool = True) -> None:
        """``context`` now extends ``node``'s tokens (which the runtime keeps pinned when
        ``pinned``: a later request of the context, or the instance's end, unpins them)."""
        context.node = node
        context.pin = Pin(node) if pinned else None

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
        alternatives: tuple[int, ...] = (),
    ) -> None:
        """``alternatives``: a select's choices' token counts."""
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
                alternatives=alternatives,
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
            return frame.context.freeze(self.tokenizer, self.session.tokens())
        except BackendError as exc:  # a remote tokenizer that cannot be fetched
            raise NanoRuntimeError(str(exc), span) from None

    async def request(
        self,
        prompt: list[int],
        params: SamplingParams,
        stmt: tree.Gen,
        ref: ProgramRef | None = None,
        progress: Callable[[RequestOutput], None] | None = None,
    ) -> RequestOutput:
        """One request; without ``ref`` it is a plain request, not a node of the graph.
        ``progress`` gets the partial output as it grows (backends that can stream)."""
        backend = self.session.backend
        try:
            if progress is not None and ref is not None and self.session.graph:
                output = await backend.generate_node(prompt, params, ref, on_progress=progress)
            else:
                submit = backend.generate if ref is None else self.generate_fn(ref)
                output = await submit(prompt, params)
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


def _common_prefix(a: str, b: str) -> int:
    n = min(len(a), len(b))
    return next((i for i in range(n) if a[i] != b[i]), n)
