"""What an instance did: one record per request group (gen or select), and the outcome."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from nanolang.syntax.errors import NanoError


class InstanceState(enum.Enum):
    """Lifecycle of one program instance: QUEUED -> RUNNING -> FINISHED | FAILED."""

    QUEUED = "queued"
    RUNNING = "running"
    FINISHED = "finished"
    FAILED = "failed"


TRANSITIONS = {
    InstanceState.QUEUED: {InstanceState.RUNNING, InstanceState.FAILED},
    InstanceState.RUNNING: {InstanceState.FINISHED, InstanceState.FAILED},
    InstanceState.FINISHED: set(),
    InstanceState.FAILED: set(),
}


@dataclass(frozen=True)
class CallRecord:
    """One ``gen`` or ``select`` as sent: enough to replay it (prompt ids, params incl. seed)."""

    instance: int
    program: str
    kind: str
    name: str
    line: int
    path: str
    request_ids: tuple[str, ...]
    prompt_token_ids: tuple[int, ...]
    params: dict[str, Any]
    text: str
    finish_reason: str | None
    iterations: tuple[int, ...]
    scores: tuple[float, ...] | None = None


@dataclass(frozen=True)
class Outcome:
    """The result of one program instance: its value or its error, and its calls."""

    index: int
    value: Any
    error: NanoError | None
    calls: tuple[CallRecord, ...] = field(default=())

    @property
    def ok(self) -> bool:
        return self.error is None
