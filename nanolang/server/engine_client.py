"""The engine as the server sees it: one engine thread (``LocalBackend``), prompt checks that
answer 400 before anything is queued, and read-only counters for /metrics."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncGenerator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from nanolang.backends.fair_queue import Owner
from nanolang.backends.local import LocalBackend
from nanolang.server.errors import APIError
from runtime.constraints import ConstraintSpec
from runtime.outputs import RequestOutput
from runtime.sampling_params import ConstraintError, SamplingParams


def encode_text(
    tokenizer: Any, text: str, param: str, add_special_tokens: bool = False
) -> list[int]:
    """``text``'s token ids; a 400 naming ``param`` for text that is not Unicode a tokenizer
    takes (a lone surrogate, which JSON can carry as an escape such as ``\\ud800``)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise APIError(
            400, f"{param} is not valid Unicode: a lone surrogate at character {exc.start}", param
        ) from None
    return list(tokenizer.encode(text, add_special_tokens=add_special_tokens))


COMPILE_THREADS = 8


def engine_failed(failure: BaseException) -> APIError:
    message = f"the engine failed and serves no requests: {failure!r}"
    return APIError(503, message, None, "engine_failed")


class EngineClient:
    """Submits requests to the engine thread; handlers await, the engine never waits on them."""

    def __init__(self, backend: LocalBackend) -> None:
        self.backend = backend
        self.llm = backend.llm
        self.compiler = None if self.tokenizer is None else self.engine.constraint_compiler()
        # a compile is waited for (up to the compile limit) on a thread of these, so a burst of
        # slow ones never holds up the default pool, which tokenizes and renders every request
        self.compiles = ThreadPoolExecutor(COMPILE_THREADS, thread_name_prefix="nanolang-compile")

    def close(self) -> None:
        """Stop the compile threads (the backend is closed by whoever made it)."""
        self.compiles.shutdown(wait=False, cancel_futures=True)

    @property
    def eos_token_ids(self) -> frozenset[int]:
        return frozenset(self.engine.eos_token_ids)

    async def prepare_constraint(self, params: SamplingParams, param: str | None = None) -> None:
        """Compile the request's constraint off the engine thread, within the limits (a 400 when
        it is invalid or over them), so the engine only finds it in the cache."""
        spec = ConstraintSpec.of(params.regex, params.json_schema, params.grammar)
        if spec is None:
            return
        if self.compiler is None:
            raise APIError(400, "constraints need a tokenizer; this model has none", param)
        try:
            loop = asyncio.get_running_loop()
            await loop.run_in_executor(self.compiles, self.compiler.prepare, spec)
        except ConstraintError as exc:
            raise APIError(400, str(exc), param, f"invalid_{spec.kind}") from exc

    @property
    def tokenizer(self) -> Any:
        return self.backend.tokenizer

    @property
    def engine(self) -> Any:
        return self.llm.engine

    @property
    def max_model_len(self) -> int:
        return int(self.engine.max_model_len)

    def token_bytes(self, token: int) -> bytes:
        """``token``'s own bytes, as llguidance reads the tokenizer (empty without one)."""
        if self.compiler is None:
            return b""
        return bytes(self.compiler.lltok.decode_bytes([token]))

    def encode(self, text: str, param: str = "prompt") -> list[int]:
        if self.tokenizer is None:
            raise APIError(400, "this model has no tokenizer: send token ids", param)
        return encode_text(self.tokenizer, text, param)

    def check_prompt(self, ids: list[int], max_tokens: int | None, param: str = "prompt") -> None:
        """400 for an empty prompt, ids out of the vocabulary, or a prompt over the context."""
        if not ids:
            raise APIError(400, "the prompt is empty", param)
        vocab = int(self.engine.model_config.vocab_size)
        if any(not 0 <= t < vocab for t in ids):
            raise APIError(400, f"prompt token ids must be in [0, {vocab})", param)
        limit = self.max_model_len
        if len(ids) >= limit:
            raise APIError(
                400,
                f"this model's context is {limit} tokens; the prompt has {len(ids)} "
                "(prompt plus at least one output token must fit)",
                param,
                "context_length_exceeded",
            )
        if max_tokens is not None and max_tokens < 1:
            raise APIError(400, f"max_tokens must be >= 1, got {max_tokens}", "max_tokens")

    def check_token_ids(self, params: SamplingParams, prefix: str = "") -> None:
        """400 for ``logit_bias`` keys or ``stop_token_ids`` outside the vocabulary (the
        sampler would skip them silently)."""
        vocab = int(self.engine.model_config.vocab_size)
        fields = {
            "logit_bias": [token for token, _ in params.logit_bias],
            "stop_token_ids": list(params.stop_token_ids),
        }
        for name, ids in fields.items():
            bad = [t for t in ids if not 0 <= t < vocab]
            if bad:
                raise APIError(
                    400, f"{name} has token ids outside [0, {vocab}): {bad[:5]}", prefix + name
                )

    def room(self, ids: list[int]) -> int:
        """How many tokens can follow ``ids`` within the context."""
        return self.max_model_len - len(ids)

    def check_alive(self) -> None:
        """503 (code ``engine_failed``) once the engine thread has stopped: nothing can run."""
        failure = self.backend.failure
        if failure is not None:
            raise engine_failed(failure)

    def api_error(self, exc: Exception) -> APIError | None:
        """What a request's failure means to its client: a 503 when the engine thread died
        (every request fails alike; a client may retry elsewhere), a 400 when the engine
        rejected the request before queueing it, None for anything else (a bug: a 500)."""
        if self.backend.failure is not None:
            return engine_failed(self.backend.failure)
        if isinstance(exc, ValueError | TypeError):
            return APIError(400, str(exc))
        return None

    async def generate(
        self, ids: list[int], params: SamplingParams, owner: Owner | None = None
    ) -> RequestOutput:
        """The final output; the engine requests of one HTTP request share an ``owner`` (the
        client and the request: they enter the engine round-robin across clients, and within a
        client across its requests: ``LocalBackend``)."""
        self.check_alive()
        try:
            return await self.backend.generate(ids, params, owner)
        except Exception as exc:
            if (error := self.api_error(exc)) is None:
                raise
            raise error from exc

    async def stream(
        self, ids: list[int], params: SamplingParams, owner: Owner | None = None
    ) -> AsyncGenerator[RequestOutput, None]:
        self.check_alive()
        updates = self.backend.stream(ids, params, owner)
        try:
            async for output in updates:
                yield output
        except Exception as exc:
            if (error := self.api_error(exc)) is None:
                raise
            raise error from exc
        finally:
            await updates.aclose()

    def counters(self) -> dict[str, float]:
        """A snapshot of the engine's gauges and counters (plain reads of ints)."""
        engine = self.engine
        stats = engine.stats
        allocator = engine.blocks.allocator
        return {
            "requests_running": engine.num_running,
            # in the engine's queue or still held for their turn to enter it
            "requests_waiting": engine.num_waiting + self.backend.num_held,
            "kv_blocks_used": allocator.num_used,
            "kv_blocks_total": allocator.num_blocks,
            "iterations_total": stats.num_iterations,
            "preemptions_total": stats.num_preemptions,
            "requests_finished_total": stats.num_finished,
            "requests_aborted_total": stats.num_aborted,
            "prompt_tokens_total": stats.prompt_tokens_computed,
            "generation_tokens_total": stats.generated_tokens,
            "iteration_seconds": stats.last_iteration_seconds,
            "batch_tokens": stats.last_batch_tokens,
            "batch_sequences": stats.last_batch_seqs,
        }
