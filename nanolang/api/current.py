"""What the decorator API needs to know about live runs without importing them: the live state
of the instance this thread runs, and the factory that makes an untraceable function a live
program (``nanolang.api.live`` registers it on import)."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

_current = threading.local()
live_factory: list[Callable[[Callable[..., Any], str], Any]] = []


def current_state() -> Any:
    """The live state of the instance this worker thread runs (None while tracing)."""
    return getattr(_current, "state", None)


def set_current_state(state: Any) -> None:
    _current.state = state
