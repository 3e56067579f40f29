"""Retries with exponential back-off for transient HTTP failures of a remote backend.

Transient: the connection could not be made or broke (refused, reset, timed out, a stream cut
short) and the statuses a busy or restarting server answers (408, 425, 429, 500, 502, 503, 504).
Requests carry their seed, so a retried request computes what the first attempt would have.

A server that stays unreachable through every attempt is marked down; while it is down each
request makes a single attempt, so a job against a dead server records its failed rows at once
instead of backing off on every row. The first success marks it up again.
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

import httpx

log = logging.getLogger(__name__)

T = TypeVar("T")

TRANSIENT_STATUSES = frozenset({408, 425, 429, 500, 502, 503, 504})

BODY_CHARS = 4_000  # of a server's answer, in an error message


class TransientError(Exception):
    """A failure worth retrying: a broken connection or a transient status."""

    def __init__(self, message: str, unreachable: bool = False) -> None:
        super().__init__(message)
        self.unreachable = unreachable


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` tries in all; the wait before try k+1 is ``base_s * 2**k`` (at most
    ``max_s``) times a random factor in [0.5, 1]."""

    attempts: int = 4
    base_s: float = 0.5
    max_s: float = 8.0

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be >= 1, got {self.attempts}")
        if self.base_s < 0 or self.max_s < 0:
            raise ValueError("back-off times must be >= 0")

    def delay(self, attempt: int) -> float:
        """Seconds to wait after failed attempt ``attempt`` (0-based)."""
        return min(self.max_s, self.base_s * 2**attempt) * random.uniform(0.5, 1.0)


def describe(exc: httpx.TransportError) -> str:
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}"


class Retrier:
    """Runs an async operation under a ``RetryPolicy``; remembers whether the server is down."""

    def __init__(self, policy: RetryPolicy, target: str) -> None:
        self.policy = policy
        self.target = target
        self.down = False

    async def run(self, operation: Callable[[], Awaitable[T]]) -> T:
        """``operation()``'s result; transient failures are retried, and after the last
        attempt raise ``TransientError`` naming the target and the number of attempts."""
        attempts = self.attempts()
        for attempt in range(attempts):
            try:
                return self.succeeded(await operation())
            except (httpx.TransportError, TransientError) as exc:
                error = as_transient(exc)
            if attempt + 1 < attempts:
                await asyncio.sleep(self.waiting(attempt, error))
        raise self.gave_up(error, attempts)

    def run_sync(self, operation: Callable[[], T]) -> T:
        """``run`` for blocking code (sleeps the thread between attempts)."""
        attempts = self.attempts()
        for attempt in range(attempts):
            try:
                return self.succeeded(operation())
            except (httpx.TransportError, TransientError) as exc:
                error = as_transient(exc)
            if attempt + 1 < attempts:
                time.sleep(self.waiting(attempt, error))
        raise self.gave_up(error, attempts)

    def attempts(self) -> int:
        return 1 if self.down else self.policy.attempts

    def succeeded(self, result: T) -> T:
        self.down = False
        return result

    def waiting(self, attempt: int, error: TransientError) -> float:
        wait = self.policy.delay(attempt)
        log.info("%s: %s; retry %d in %.1fs", self.target, error, attempt + 1, wait)
        return wait

    def gave_up(self, error: TransientError, attempts: int) -> TransientError:
        self.down = self.down or error.unreachable
        tries = "1 attempt" if attempts == 1 else f"{attempts} attempts"
        return TransientError(f"{self.target}: {error} (after {tries})", error.unreachable)


def as_transient(exc: httpx.TransportError | TransientError) -> TransientError:
    if isinstance(exc, TransientError):
        return exc
    return TransientError(describe(exc), unreachable=is_unreachable(exc))


def is_unreachable(exc: httpx.TransportError) -> bool:
    return isinstance(exc, (httpx.ConnectError, httpx.ConnectTimeout))


def body_text(body: bytes, limit: int = BODY_CHARS) -> str:
    """A server's answer as text for an error message: whole up to ``limit`` characters, else
    cut there with a note of how much more there was (it was cut at 200 without a word, and a
    500's cause is often past its first lines)."""
    text = body.decode(errors="replace")
    if len(text) <= limit:
        return text
    return f"{text[:limit]} [... {len(text) - limit:,} more characters cut]"


def check_status(status: int, body: bytes) -> None:
    """Raise ``TransientError`` for a transient status (other errors are the caller's)."""
    if status in TRANSIENT_STATUSES:
        raise TransientError(f"server answered {status}: {body_text(body)}")
