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
class NodeRecord:
    """One node of the request graph an instance actually ran (``nanolang run --trace``).

    ``parent``: the node whose token sequence this node's prompt extends; ``group``: the fork
    node whose branches' first requests were admitted together. Token counts: ``prompt_tokens``
    (the whole prompt), ``new_prompt_tokens`` (beyond the parent's tokens), ``output_tokens``,
    ``cached_tokens`` (prompt tokens the runtime served from its cache, summed over requests),
    ``total_tokens`` (the context after the node). Times in seconds from the instance's start.
    A ``select`` is one node; ``alternatives`` are its choices' token counts, one request each.
    """

    id: int
    kind: str  # "gen", "select" or "fork"
    name: str
    path: str
    line: int
    parent: int | None
    group: int | None
    prompt_tokens: int
    new_prompt_tokens: int
    output_tokens: int
    cached_tokens: int
    submitted_s: float
    finished_s: float
    request_ids: tuple[str, ...]
    total_tokens: int = 0
    alternatives: tuple[int, ...] = ()


@dataclass(frozen=True)
class Transcript:
    """An instance's context after its run: the full text (chat through the template), the
    chat messages, its top-level variables, and per-gen metadata (logprobs when asked for)."""

    text: str
    messages: tuple[dict[str, str], ...]
    variables: dict[str, Any]
    meta: dict[str, dict[str, Any]] = field(default_factory=dict)


@dataclass(frozen=True)
class Outcome:
    """The result of one program instance: its value or its error, and its calls."""

    index: int
    value: Any
    error: NanoError | None
    calls: tuple[CallRecord, ...] = field(default=())
    nodes: tuple[NodeRecord, ...] = field(default=())
    transcript: Transcript | None = None

    @property
    def ok(self) -> bool:
        return self.error is None
