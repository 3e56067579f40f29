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
    names the node in ``unpin`` and is admitted, or the instance is released."""

    instance: int
    node: int
    parent: int | None = None
    group: int | None = None
    pin: bool = False
    unpin: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        if self.node < 0 or (self.parent is not None and self.parent < 0):
            raise ValueError("program node ids are non-negative")
