"""Runs many program instances at once on one event loop (no thread per instance).

Every instance is a coroutine; each submits its requests as soon as their inputs are ready,
so the backend sees the calls of all instances together and batches them. A failing instance
records its error (with the .nano position) in its Outcome and the others go on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Sequence
from typing import Any

from nanolang.backends.base import Backend, BackendError
from nanolang.run.arguments import bind_args
from nanolang.run.footprint import footprint
from nanolang.run.interpreter import Interpreter, Session
from nanolang.run.records import TRANSITIONS, InstanceState, Outcome, Transcript
from nanolang.run.tools import Tools, check_tools
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError, NanoRuntimeError

log = logging.getLogger(__name__)

Job = tuple[str, dict[str, Any]]


class Executor:
    """Executes instances of a checked module's programs against ``backend``.

    ``seed``: when set, every ``gen`` without its own seed gets one derived from
    (seed, instance index, position in the program), so runs are reproducible.
    ``max_concurrency``: how many instances are in flight at once. ``defaults``: sampling
    arguments every ``gen`` gets unless it sets its own (the run-level defaults); ``tools``:
    the host functions for the module's ``tool`` declarations.
    ``graph``: hand the runtime graph nodes (True) or independent requests (False).
    """

    def __init__(
        self,
        module: tree.Module,
        backend: Backend,
        seed: int | None = None,
        max_concurrency: int = 1024,
        graph: bool = True,
        defaults: dict[str, Any] | None = None,
        tools: Tools | None = None,
    ) -> None:
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.module = module
        self.backend = backend
        self.seed = seed
        self.defaults = dict(defaults or {})
        self.tools = dict(tools or {})
        check_tools(module, self.tools)
        self.max_concurrency = max_concurrency
        self.session = Session(
            module, backend, seed, graph, defaults=self.defaults, tools=self.tools
        )
        self.states: dict[int, InstanceState] = {}
        # streaming: every instance calls it with (gen name or None, text delta) as it grows
        self.on_text: Callable[[str | None, str], None] | None = None

    def program(self, name: str) -> tree.ProgramDef:
        program = self.module.get(name)
        if program is None:
            known = ", ".join(p.name for p in self.module.programs)
            raise NanoRuntimeError(f"no program {name!r} in {self.module.file} (have: {known})")
        return program

    def advance(self, index: int, state: InstanceState) -> None:
        """Move instance ``index`` to ``state`` (the only place instance states change)."""
        current = self.states.get(index)
        if current is not None and state not in TRANSITIONS[current]:
            raise RuntimeError(
                f"instance {index}: illegal transition {current.name} -> {state.name}"
            )
        self.states[index] = state

    def counts(self) -> dict[InstanceState, int]:
        """How many instances are in each state."""
        return {s: sum(1 for v in self.states.values() if v is s) for s in InstanceState}

    async def run(self, name: str, args: dict[str, Any], index: int = 0) -> Outcome:
        """Run one instance; never raises for program errors (they are in the Outcome)."""
        interpreter = self._start(index)
        try:
            program = self.program(name)
            bound = bind_args(program, args)
            interpreter.peak_tokens = self.check_fits(program, bound)
            value = await interpreter.run_program(program, bound, f"{name}")
        except NanoError as exc:  # the caller reports it (once): run_many logs, run raises
            exc.with_source(self.module.source_for(exc.span.file))
            return self._failed(index, exc, interpreter)
        except BackendError as exc:  # expected (a refused request, a dead server): no traceback
            return self._failed(index, NanoRuntimeError(str(exc)), interpreter)
        except Exception as exc:
            log.exception("instance %d failed with an internal error", index)
            return self._failed(index, NanoRuntimeError(f"internal error: {exc!r}"), interpreter)
        finally:
            interpreter.finish()
        return self._finished(index, value, interpreter)

    def check_fits(self, program: tree.ProgramDef, args: dict[str, Any]) -> int | None:
        """Refuse an instance whose graph could not fit in the runtime's KV cache on its own
        (the runtime preempts whole instances, so it could never finish); else its estimated
        peak KV tokens (None where the backend has no KV cache to check against)."""
        capacity = self.backend.kv_capacity_tokens
        if capacity is None:
            return None
        tokens = self.session.tokens()
        need = footprint(self.module, program, args, tokens.tokenizer, tokens)
        if need.tokens > capacity:
            raise NanoRuntimeError(
                f"program {program.name!r} needs up to {need.tokens} KV tokens at once (every "
                f"gen at its max_tokens, fork branches side by side; peak here), but the "
                f"runtime's KV cache holds {capacity}: lower max_tokens or fork counts, or "
                "give the engine more KV memory",
                need.where or program.span,
            )
        return need.tokens

    def _start(self, index: int) -> Interpreter:
        """A fresh interpreter for instance ``index``, now running."""
        interpreter = Interpreter(self.session, index)
        interpreter.on_text = self.on_text
        if self.states.get(index) is not InstanceState.QUEUED:
            self.states.pop(index, None)  # a direct run (not through run_many) starts afresh
        self.advance(index, InstanceState.RUNNING)
        return interpreter

    def _finished(self, index: int, value: Any, interpreter: Interpreter) -> Outcome:
        return self._outcome(index, InstanceState.FINISHED, value, None, interpreter)

    def _failed(self, index: int, error: NanoError, interpreter: Interpreter) -> Outcome:
        return self._outcome(index, InstanceState.FAILED, None, error, interpreter)

    def _outcome(
        self,
        index: int,
        state: InstanceState,
        value: Any,
        error: NanoError | None,
        interpreter: Interpreter,
    ) -> Outcome:
        """The instance's last state, and what it leaves: value or error, its requests, graph
        nodes and transcript (none when its context cannot render)."""
        self.advance(index, state)
        records, nodes = tuple(interpreter.records), tuple(interpreter.nodes)
        return Outcome(index, value, error, records, nodes, _transcript(interpreter))

    async def run_many(
        self, jobs: Sequence[Job], on_done: Callable[[Outcome], None] | None = None
    ) -> list[Outcome]:
        """Run every job concurrently (up to ``max_concurrency``); outcomes in job order."""
        gate = asyncio.Semaphore(self.max_concurrency)
        for index in range(len(jobs)):
            self.advance(index, InstanceState.QUEUED)

        async def one(index: int, job: Job) -> Outcome:
            async with gate:
                outcome = await self.run(job[0], job[1], index)
            if outcome.error is not None:
                log.error("instance %d failed: %s", index, outcome.error.format())
            if on_done is not None:
                on_done(outcome)
            return outcome

        return list(await asyncio.gather(*(one(i, job) for i, job in enumerate(jobs))))


def _transcript(interpreter: Interpreter) -> Transcript | None:
    try:
        return interpreter.transcript()
    except Exception:  # a context that cannot render (e.g. a failed tokenizer) has no transcript
        log.debug("no transcript for instance %d", interpreter.instance, exc_info=True)
        return None
