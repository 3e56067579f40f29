"""Streaming a run: the root context's text as it grows (token by token while a ``gen`` runs
on a backend that can stream, statement by statement otherwise).

``program.run(..., stream=True)`` returns a ``StreamingRun`` (SGLang's shape: ``text_iter()``,
then the state); ``async for delta in program.stream(...)`` is the asyncio form.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from nanolang.api.options import RunOptions
from nanolang.api.state import RunState, result_of
from nanolang.run.records import Outcome

Program = Any  # a nanolang.api.program.Program (which imports this module)

_END = object()


async def stream_outcome(
    program: Program,
    args: dict[str, Any],
    options: RunOptions,
    on_text: Callable[[str | None, str], None],
) -> Outcome:
    """Run one instance, calling ``on_text(gen name or None, delta)`` as its text grows."""
    executor = program.executor(options)
    executor.on_text = on_text
    return await executor.run(program.name, args)


async def stream_deltas(
    program: Program, args: dict[str, Any], options: RunOptions
) -> AsyncIterator[str]:
    """The text deltas of one instance; its error, if it fails, is raised at the end."""
    deltas: asyncio.Queue[str] = asyncio.Queue()
    task = asyncio.ensure_future(
        stream_outcome(program, args, options, lambda _, d: deltas.put_nowait(d))
    )
    try:
        while not (task.done() and deltas.empty()):
            getter = asyncio.ensure_future(deltas.get())
            await asyncio.wait({getter, task}, return_when=asyncio.FIRST_COMPLETED)
            if getter.done():
                yield getter.result()
            else:
                getter.cancel()
    finally:
        if not task.done():
            task.cancel()
    outcome = task.result()
    if outcome.error is not None:
        raise outcome.error


class StreamingRun:
    """``run(stream=True)``: the instance runs on a background thread; ``text_iter()`` yields
    its text as it grows (``text_iter("x")``: only gen ``x``'s tokens); reading a variable,
    ``text()`` or ``messages()`` waits for the end."""

    def __init__(self, program: Program, args: dict[str, Any], options: RunOptions) -> None:
        self._deltas: queue.Queue[Any] = queue.Queue()
        self._outcome: Outcome | None = None
        self._thread = threading.Thread(
            target=self._run, args=(program, args, options), daemon=True
        )
        self._thread.start()

    def _run(self, program: Program, args: dict[str, Any], options: RunOptions) -> None:
        try:
            on_text = lambda name, delta: self._deltas.put((name, delta))  # noqa: E731
            self._outcome = asyncio.run(stream_outcome(program, args, options, on_text))
        finally:
            self._deltas.put(_END)

    def text_iter(self, var_name: str | None = None) -> Iterator[str]:
        while (item := self._deltas.get()) is not _END:
            name, delta = item
            if var_name is None or name == var_name:
                yield delta

    def result(self) -> Any:
        """What ``run`` would have returned (waits for the end; raises the instance's error)."""
        self._thread.join()
        assert self._outcome is not None
        if self._outcome.error is not None:
            raise self._outcome.error
        return result_of(self._outcome)

    def __getitem__(self, name: str) -> Any:
        result = self.result()
        if isinstance(result, dict):  # a returned record
            return result[name]
        return self._state(f"state[{name!r}]")[name]

    def text(self) -> str:
        return str(self._state("text()").text())

    def messages(self) -> list[dict[str, str]]:
        return list(self._state("messages()").messages())

    def _state(self, what: str) -> RunState:
        result = self.result()
        if not isinstance(result, RunState):
            raise TypeError(
                f"{what} reads the state of a program without return; this one returned "
                f"{result!r}: read that with result()"
            )
        return result
