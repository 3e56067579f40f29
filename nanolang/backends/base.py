"""The interface every backend implements: submit one request, await its final output."""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime (and torch) load only when a backend does
    from runtime.outputs import RequestOutput
    from runtime.program_ref import ProgramRef
    from runtime.sampling_params import SamplingParams


class BackendError(RuntimeError):
    """A request the backend could not complete (refused, or its server unreachable). The
    instance that sent it fails with this message; it is an expected failure, not a bug."""


class Backend(abc.ABC):
    """Where requests go. Implementations batch concurrent ``generate`` calls themselves."""

    @property
    @abc.abstractmethod
    def tokenizer(self) -> Any:
        """A Hugging Face tokenizer (``encode``, ``decode``, ``apply_chat_template``)."""

    @abc.abstractmethod
    async def generate(self, prompt_ids: list[int], params: SamplingParams) -> RequestOutput:
        """Run one request to completion and return its finished output.

        Cancelling the awaiting task aborts the request."""

    async def generate_node(
        self,
        prompt_ids: list[int],
        params: SamplingParams,
        node: ProgramRef,
        on_progress: Callable[[RequestOutput], None] | None = None,
    ) -> RequestOutput:
        """``generate`` for one node of a program instance's request graph. Backends whose
        runtime schedules by the graph (``Local``) pass ``node`` on; the others ignore it.
        ``on_progress`` gets the partial output as it grows where the backend can stream."""
        return await self.generate(prompt_ids, params)

    def end_instance(self, instance: int) -> None:  # noqa: B027 (optional; no-op by default)
        """A program instance ended: the runtime may release what it kept for it (pins)."""

    def unpin(self, instance: int, nodes: tuple[int, ...]) -> None:  # noqa: B027
        """No child will extend ``nodes`` of ``instance``: the runtime may release their pins."""

    @property
    def scores_token_ids(self) -> bool:
        """Whether requests return ``SamplingParams.score_token_ids``' logprobs (``select``
        then scores one-token choices with one request instead of one per choice)."""
        return False

    @property
    def kv_capacity_tokens(self) -> int | None:
        """Tokens the runtime's KV cache holds, when known (programs larger are refused)."""
        return None

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources (threads, connections). Idempotent."""
