"""SIGTERM stops a job as Ctrl-C does. Batch systems and time limits stop a job with SIGTERM
(SLURM at the end of a job's time, ``timeout``, Kubernetes, ``kill``), whose default action
ended the process at once: no note of what was saved and how to resume, and a live progress bar
left the terminal's cursor hidden. While ``sigterm_interrupts`` is active, SIGTERM raises
``Terminated`` (a ``KeyboardInterrupt``), so the job's Ctrl-C path runs: rows in flight are
dropped, finished ones are already in the results file, one line says so, and the exit status
is 143 (128 + SIGTERM), as the default action's."""

from __future__ import annotations

import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from types import FrameType

from nanolang.jobs.progress import INTERRUPTED


class Terminated(KeyboardInterrupt):
    """The job got SIGTERM."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise Terminated(f"stopped by {signal.Signals(signum).name}")


@contextmanager
def sigterm_interrupts() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` in the main thread until the block ends (the previous
    handler is restored after). Off the main thread, where handlers cannot be set, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + signal.SIGTERM if isinstance(interrupt, Terminated) else INTERRUPTED
