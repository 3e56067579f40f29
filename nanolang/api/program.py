"""``Program``: a checked program with its module, and the ways to run it."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.api.options import RunOptions, split_run_args
from nanolang.api.progress import ProgressBar
from nanolang.api.state import result_of
from nanolang.backends.base import Backend
from nanolang.check.checker import check_or_raise
from nanolang.graph.builder import build_graph
from nanolang.graph.request_graph import Graph
from nanolang.run.executor import Executor
from nanolang.run.records import Outcome
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError
from nanolang.syntax.parser import parse
from nanolang.syntax.source import read_source

log = logging.getLogger(__name__)

_default_backend: Backend | None = None


def set_backend(backend: Backend | None) -> None:
    """The backend programs use when ``run`` gets none (None: load the demo model lazily)."""
    global _default_backend
    _default_backend = backend


def default_backend() -> Backend:
    global _default_backend
    if _default_backend is None:
        from nanolang.backends.local import LocalBackend

        _default_backend = LocalBackend.from_model()
    return _default_backend


@dataclass(frozen=True)
class Program:
    """One program of a checked module; calls may reach the module's other programs."""

    module: tree.Module
    name: str

    @property
    def definition(self) -> tree.ProgramDef:
        found = self.module.get(self.name)
        assert found is not None
        return found

    def graph(self) -> Graph:
        """The request graph of the whole module this program belongs to."""
        return build_graph(self.module)

    def __getitem__(self, name: str) -> Program:
        if self.module.get(name) is None:
            raise KeyError(f"no program {name!r} in {self.module.file}")
        return Program(self.module, name)

    def run(self, *args: Any, **kwargs: Any) -> Any:
        """Run one instance and return its value; raises its NanoError if it fails.

        Positional values fill the parameters in order; keywords naming a parameter are the
        program's; ``backend``, ``seed`` and sampling defaults (``temperature``,
        ``max_tokens``, ...) are run options (``run_options=RunOptions(...)`` when a parameter
        shares an option's name)."""
        values, options = split_run_args(self.definition, args, kwargs)
        if options.stream:
            from nanolang.api.stream import StreamingRun

            return StreamingRun(self, values, options)
        outcome = asyncio.run(self.arun_outcome(values, options))
        if outcome.error is not None:
            raise outcome.error
        return result_of(outcome)

    __call__ = run  # SGLang's spelling: calling the function runs it

    def stream(self, *args: Any, **kwargs: Any) -> AsyncIterator[str]:
        """``async for delta in program.stream(...)``: the instance's text as it grows; its
        error, if it fails, is raised after the last delta."""
        from nanolang.api.stream import stream_deltas

        values, options = split_run_args(self.definition, args, kwargs)
        return stream_deltas(self, values, options)

    async def arun_outcome(
        self,
        args: dict[str, Any],
        backend: Backend | RunOptions | None = None,
        seed: int | None = None,
        **defaults: Any,
    ) -> Outcome:
        """Run one instance inside a running event loop; the Outcome holds value or error."""
        if isinstance(backend, RunOptions):
            return await self.executor(backend).run(self.name, args)
        options = RunOptions(backend, seed, defaults, tools=defaults.pop("tools", None))
        return await self.executor(options).run(self.name, args)

    def executor(self, options: RunOptions, **kw: Any) -> Executor:
        backend = options.backend or default_backend()
        return Executor(
            self.module,
            backend,
            seed=options.seed,
            defaults=options.defaults,
            tools=options.tools,
            **kw,
        )

    def run_batch(
        self,
        list_of_args: Sequence[dict[str, Any]],
        progress: bool = True,
        backend: Backend | None = None,
        seed: int | None = None,
        max_concurrency: int = 1024,
        tools: Any = None,
        num_threads: int | None = None,
        progress_bar: bool | None = None,
        **defaults: Any,
    ) -> list[Any]:
        """Run one instance per argument dict, all at once; values in order.

        A failed instance's entry is its NanoError (also logged); the others are unaffected.
        ``defaults`` are sampling defaults for every gen (``temperature=0``, ``max_tokens``).
        Use ``run_batch_outcomes`` for the per-call records as well. ``num_threads`` and
        ``progress_bar`` are SGLang's names for ``max_concurrency`` and ``progress``."""
        if num_threads is not None:
            max_concurrency = num_threads
        if progress_bar is not None:
            progress = progress_bar
        outcomes = self.run_batch_outcomes(
            list_of_args, progress, backend, seed, max_concurrency, tools, **defaults
        )
        return [result_of(o) if o.error is None else o.error for o in outcomes]

    def run_batch_outcomes(
        self,
        list_of_args: Sequence[dict[str, Any]],
        progress: bool = True,
        backend: Backend | None = None,
        seed: int | None = None,
        max_concurrency: int = 1024,
        tools: Any = None,
        **defaults: Any,
    ) -> list[Outcome]:
        options = RunOptions(backend, seed, defaults, tools=tools)
        executor = self.executor(options, max_concurrency=max_concurrency)
        jobs = [(self.name, dict(args)) for args in list_of_args]
        with ProgressBar(self.name, len(jobs), enabled=progress) as bar:
            outcomes = asyncio.run(executor.run_many(jobs, on_done=bar.advance))
        failed = sum(1 for o in outcomes if o.error is not None)
        if failed:
            log.error("%d of %d instances of %s failed", failed, len(outcomes), self.name)
        return outcomes


def compile(source: str, name: str | None = None, filename: str = "<string>") -> Program:
    """Parse and check ``source``; return program ``name`` (default: ``main``, else the first)."""
    module = parse(source, filename)
    check_or_raise(module)
    return entry(module, name)


def load(path: str | Path, name: str | None = None) -> Program:
    """``compile`` the contents of a .nano file."""
    path = Path(path)
    return compile(read_source(path), name, str(path))


def entry(module: tree.Module, name: str | None) -> Program:
    if not module.programs:
        raise NanoError(f"{module.file} defines no program")
    if name is None:
        name = "main" if module.get("main") else module.programs[0].name
    if module.get(name) is None:
        known = ", ".join(p.name for p in module.programs)
        raise NanoError(f"no program {name!r} in {module.file} (have: {known})")
    return Program(module, name)
