"""What a request tells the runtime about its place in a program instance's request graph.

Plain data the language attaches to a request (``LLMEngine.add_request(..., program=ref)``);
requests without one are scheduled as before. See ``runtime.instances`` for what the scheduler
does with it.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class ProgramRef:
    """``instance``: the running program instance (a key the frontend keeps unique per engine).
    ``node``: this request's node in the instance's graph; ``parent``: the node whose exact token
    sequence (prompt plus output) this request's prompt extends. ``group``: fork siblings or the
    alternatives of one ``select`` share a group key, and the scheduler admits them together
    after the first member computed their shared prefix. ``pin``: a known child will extend this
    request, so its KV blocks stay pinned after it finishes, until a request of the instance
    names the node in ``unpin`` and is admitted, or the instance is released. ``peak_tokens``:
    the most KV tokens the whole instance holds at once, as the frontend estimates it before
    the instance starts (None: unknown); the scheduler reads it from an instance's first
    request (progress priority: instances whose peaks fit in the cache together never make it
    short)."""

    instance: int
    node: int
    parent: int | None = None
    group: int | None = None
    pin: bool = False
    unpin: tuple[int, ...] = ()
    peak_tokens: int | None = None

    def __post_init__(self) -> None:
        if self.node < 0 or (self.parent is not None and self.parent < 0):
            raise ValueError("program node ids are non-negative")
        if self.peak_tokens is not None and self.peak_tokens < 0:
            raise ValueError("an instance's peak_tokens is non-negative")
