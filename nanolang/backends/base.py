"""The interface every backend implements: submit one request, await its final output."""

from __future__ import annotations

import abc
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the runtime (and torch) load only when a backend does
    from runtime.outputs import RequestOutput
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

    @abc.abstractmethod
    def close(self) -> None:
        """Release resources (threads, connections). Idempotent."""
