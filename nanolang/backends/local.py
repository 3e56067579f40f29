"""The in-process engine as a backend: one engine thread, continuous batching across callers.

The engine is not thread-safe, so one dedicated thread owns it. It loops: drain the inbox of
add/abort commands, run ``step()`` while requests are unfinished, and hand every finished output
back to the asyncio loop that asked for it (``call_soon_threadsafe``). Every instance of every
program shares this thread, so their calls land in the same engine iterations.

Requests sent with an ``owner`` (the server's: the client identity and the HTTP request) are
held in a ``FairQueue`` and enter the engine round-robin across clients, and within a client
across its requests, only as many as its next step could start: before every step the thread
tops the engine's queue up to the free sequence slots and one step's token budget
(``max_num_batched_tokens``) of prompt tokens, and, when the last step left some of its queue
waiting (memory is short), to as many as that step started (at least ``MIN_QUEUED``). The
engine starts as many sequences per step as it would with all of them queued, and a request
that arrives behind one with thousands of choices (or behind another client's fifty requests)
waits behind about one step's worth of them (plus one turn per other client), not behind all
of them.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
from collections.abc import AsyncGenerator, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from nanolang.backends.base import Backend
from nanolang.backends.fair_queue import FairQueue, Owner
from runtime.outputs import OutputKind, RequestOutput
from runtime.program_ref import ProgramRef
from runtime.sampling_params import SamplingParams

log = logging.getLogger(__name__)

MIN_QUEUED = 16  # held requests the engine's queue is topped up to while memory is short


@dataclass(frozen=True)
class _Add:
    request_id: str
    prompt_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future[RequestOutput]
    on_progress: Callable[[RequestOutput], None] | None = None
    program: ProgramRef | None = None
    owner: Owner | None = None


@dataclass(frozen=True)
class _Abort:
    request_id: str


@dataclass(frozen=True)
class _EndInstance:
    instance: int


@dataclass(frozen=True)
class _Unpin:
    instance: int
    nodes: tuple[int, ...]


class _Stop:
    pass


class LocalBackend(Backend):
    """Runs requests on a ``runtime.LLM`` owned by a background thread."""

    def __init__(self, llm: Any) -> None:
        self.llm = llm
        self._held: FairQueue[_Add] = FairQueue()  # owned requests not in the engine yet
        # what the last step did with the engine's queue: took all of it, or started how many
        self._drained = True
        self._started = 0
        self._inbox: queue.SimpleQueue[_Add | _Abort | _EndInstance | _Unpin | _Stop] = (
            queue.SimpleQueue()
        )
        self._waiting: dict[str, _Add] = {}
        self._ids = itertools.count()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._failure: BaseException | None = None

    @classmethod
    def from_model(cls, model: str | Path | None = None, **llm_kwargs: Any) -> LocalBackend:
        """Load ``model`` (a Hugging Face model dir; the demo model when None) on the CPU."""
        from nanolang.demo import model_dir
        from runtime import LLM

        path = Path(model) if model is not None else model_dir()
        llm_kwargs.setdefault("dtype", "float32")
        llm_kwargs.setdefault("device", "cpu")
        return cls(LLM(str(path), **llm_kwargs))

    @property
    def tokenizer(self) -> Any:
        return self.llm.tokenizer

    @property
    def failure(self) -> BaseException | None:
        """The error that stopped the engine thread, or None while it is healthy."""
        return self._failure

    @property
    def num_held(self) -> int:
        """Requests with an owner waiting for their turn to enter the engine."""
        return len(self._held)

    @property
    def scores_token_ids(self) -> bool:
        return True

    @property
    def kv_capacity_tokens(self) -> int:
        engine = self.llm.engine
        return int(engine.blocks.allocator.num_blocks * engine.config.block_size)

    async def generate(
        self, prompt_ids: list[int], params: SamplingParams, owner: Owner | None = None
    ) -> RequestOutput:
        """The request's final output; with an ``owner``, it enters the engine in its owner's
        turn (see the module's docstring)."""
        return await self._submit(prompt_ids, params, None, owner=owner)

    async def generate_node(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        node: ProgramRef,
        on_progress: Callable[[RequestOutput], None] | None = None,
    ) -> RequestOutput:
        return await self._submit(prompt_ids, params, node, on_progress)

    def end_instance(self, instance: int) -> None:
        if self._thread is not None:
            self._inbox.put(_EndInstance(instance))

    def unpin(self, instance: int, nodes: tuple[int, ...]) -> None:
        if self._thread is not None and nodes:
            self._inbox.put(_Unpin(instance, nodes))

    async def _submit(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        node: ProgramRef | None,
        on_progress: Callable[[RequestOutput], None] | None = None,
        owner: Owner | None = None,
    ) -> RequestOutput:
        if self._failure is not None:
            raise RuntimeError(f"the engine thread failed earlier: {self._failure!r}")
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RequestOutput] = loop.create_future()
        request_id = f"nl-{next(self._ids)}"
        self._inbox.put(
            _Add(request_id, list(prompt_ids), params, loop, future, on_progress, node, owner)
        )
        try:
            return await future
        except asyncio.CancelledError:
            self._inbox.put(_Abort(request_id))
            raise

    async def stream(
        self, prompt_ids: list[int], params: SamplingParams, owner: Owner | None = None
    ) -> AsyncGenerator[RequestOutput, None]:
        """Yield the request's output after engine steps that advanced it, the final one last.
        Each output is cumulative, so a consumer that lags behind the engine gets only the
        newest when it asks again. Closing the iterator early (or cancelling its consumer)
        aborts the request."""
        if self._failure is not None:
            raise RuntimeError(f"the engine thread failed earlier: {self._failure!r}")
        self._ensure_thread()
        loop = asyncio.get_running_loop()
        future: asyncio.Future[RequestOutput] = loop.create_future()
        latest = _Latest()
        future.add_done_callback(lambda _: latest.close())
        request_id = f"nl-{next(self._ids)}"
        self._inbox.put(
            _Add(request_id, list(prompt_ids), params, loop, future, latest.put, owner=owner)
        )
        try:
            while (update := await latest.take()) is not None:
                yield update
            yield future.result()
        finally:
            if not future.done():  # the caller left: nothing may be set on the future now
                future.cancel()  # (an error set by a later close would go unretrieved)
                self._inbox.put(_Abort(request_id))

    def close(self) -> None:
        with self._lock:
            thread, self._thread = self._thread, None
        if thread is not None:
            self._inbox.put(_Stop())
            thread.join()

    def _ensure_thread(self) -> None:
        if self._thread is not None:  # the common case: no lock on every request
            return
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(
                    target=self._loop, name="nanolang-engine", daemon=True
                )
                self._thread.start()

    # engine thread

    def _loop(self) -> None:
        try:
            while self._drain(block=not (self.llm.has_unfinished_requests() or self._held)):
                self._feed()
                if self.llm.has_unfinished_requests():
                    self._deliver(self._step())
        except BaseException as exc:  # the engine failed: every waiting caller must hear it
            log.exception("engine thread failed")
            self._failure = exc
            self._fail_all(exc)

    def _drain(self, block: bool) -> bool:
        """Apply queued commands; False once asked to stop."""
        while True:
            try:
                command = self._inbox.get(block=block)
            except queue.Empty:
                return True
            block = False
            if isinstance(command, _Stop):
                self._fail_all(RuntimeError("backend closed"))
                return False
            if isinstance(command, _Abort):
                if self._held.remove(command.request_id) is not None:
                    continue  # never reached the engine (its caller is gone)
                if self._waiting.pop(command.request_id, None) is not None:
                    self.llm.abort_request(command.request_id)
                continue
            if isinstance(command, _EndInstance):
                self.llm.engine.release_instance(command.instance)
                continue
            if isinstance(command, _Unpin):
                self.llm.engine.unpin(command.instance, command.nodes)
                continue
            if command.owner is None:
                self._add(command)
            else:
                self._held.put(command.owner, command.request_id, command)

    def _step(self) -> list[RequestOutput]:
        engine = self.llm.engine
        queued = engine.num_waiting
        outputs: list[RequestOutput] = self.llm.step()
        left = engine.num_waiting
        self._drained, self._started = left == 0, queued - left  # (less any it preempted)
        return outputs

    def _feed(self) -> None:
        """Move held requests into the engine, round-robin across their owners, until its
        queue holds what its next step could start (see the module's docstring)."""
        if not self._held:
            return
        engine = self.llm.engine
        target = engine.config.max_num_seqs - engine.num_running
        if not self._drained:
            target = min(target, max(self._started, MIN_QUEUED))
        slots = target - engine.num_waiting
        tokens = engine.num_waiting_tokens
        budget = engine.config.max_num_batched_tokens
        while slots > 0 and tokens < budget and (command := self._held.take()) is not None:
            if self._add(command):
                slots -= 1
                tokens += len(command.prompt_ids)

    def _add(self, command: _Add) -> bool:
        """Put ``command`` in the engine; False when the engine refused it (its caller has
        the error)."""
        # a caller without on_progress waits for the result: no output is built until the end
        kind = OutputKind.FINAL_ONLY if command.on_progress is None else OutputKind.CUMULATIVE
        try:
            self.llm.add_request(
                command.prompt_ids, command.params, command.request_id, command.program, kind
            )
        except Exception as exc:  # a rejected request fails only its caller
            _notify(command, _set_exception, command.future, exc)
            return False
        self._waiting[command.request_id] = command
        return True

    def _deliver(self, outputs: list[RequestOutput]) -> None:
        """Hand one step's outputs to their callers: finished ones resolve their futures,
        partial ones go to ``on_progress``. One wake-up of each caller's loop per step, not one
        per output (a thousand instances' outputs each woke the loop on its own)."""
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[_Add, RequestOutput]]] = {}
        for output in outputs:
            if output.finished:
                command = self._waiting.pop(output.request_id, None)
            else:
                command = self._waiting.get(output.request_id)
                if command is not None and command.on_progress is None:
                    continue
            if command is not None:
                by_loop.setdefault(command.loop, []).append((command, output))
        for loop, items in by_loop.items():
            try:
                loop.call_soon_threadsafe(_hand_over, items)
            except RuntimeError:  # that loop is closed: its callers are gone
                for _command, output in items:
                    if not output.finished:
                        self._waiting.pop(output.request_id, None)
                        self.llm.abort_request(output.request_id)

    def _fail_all(self, exc: BaseException) -> None:
        for command in [*self._waiting.values(), *self._held.clear()]:
            _notify(command, _set_exception, command.future, exc)
        self._waiting.clear()


class _Latest:
    """A streamed request's newest partial output not taken yet. Outputs are cumulative, each
    superseding the ones before, so only the newest is kept: a consumer that lags (its client
    reads slowly or not at all) held a copy of the whole output per engine step, memory
    quadratic in the output's length."""

    def __init__(self) -> None:
        self._output: RequestOutput | None = None
        self._closed = False
        self._ready = asyncio.Event()

    def put(self, output: RequestOutput) -> None:
        self._output = output
        self._ready.set()

    def close(self) -> None:
        self._closed = True
        self._ready.set()

    async def take(self) -> RequestOutput | None:
        """The newest output not taken yet; None once closed with none left."""
        while self._output is None and not self._closed:
            self._ready.clear()
            await self._ready.wait()
        output, self._output = self._output, None
        return output


def _notify(command: _Add, fn: Callable[..., None], *args: Any) -> bool:
    """Run ``fn(*args)`` on the caller's loop; False when that loop is already closed (its
    caller is gone: the result has nobody to go to, and the engine thread must go on)."""
    try:
        command.loop.call_soon_threadsafe(fn, *args)
    except RuntimeError:
        return False
    return True


def _hand_over(items: list[tuple[_Add, RequestOutput]]) -> None:
    """On the caller's loop: results to futures, partial outputs to ``on_progress`` (a failing
    callback is logged and does not keep the others' outputs from them)."""
    for command, output in items:
        if output.finished:
            _set_result(command.future, output)
            continue
        assert command.on_progress is not None
        try:
            command.on_progress(output)
        except Exception:
            log.exception("on_progress of request %s failed", output.request_id)


def _set_result(future: asyncio.Future[RequestOutput], output: RequestOutput) -> None:
    if not future.done():
        future.set_result(output)


def _set_exception(future: asyncio.Future[RequestOutput], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)
