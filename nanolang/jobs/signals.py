"""SIGTERM stops a job as Ctrl-C does. Batch systems and time limits stop a job with SIGTERM
(SLURM at the end of a job's time, ``timeout``, Kubernetes, ``kill``), whose default action
ended the process at once: no note of what was saved and how to resume, and a live progress bar
left the terminal's cursor hidden. While ``interrupting_signals`` is active, SIGTERM raises
``Terminated`` (a ``KeyboardInterrupt``), so the job's Ctrl-C path runs: rows in flight are
dropped, finished ones are already in the results file, one line says so, and the exit status
is 143 (128 + SIGTERM), as the default action's. SIGINT raises ``KeyboardInterrupt`` even in a
process that inherited it ignored (one started in the background by a non-interactive shell,
where ``kill -INT`` did nothing and the job ran on), as ``nanolang bench``'s does. So a Ctrl-C
sent to a script's whole process group also stops the jobs it started in the background (each
keeping what it finished), and processes a job starts get SIGINT's default action."""

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
def interrupting_signals() -> Iterator[None]:
    """SIGTERM raises ``Terminated`` and SIGINT ``KeyboardInterrupt`` in the main thread until
    the block ends (the previous handlers are restored after). Off the main thread, where
    handlers cannot be set, nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.getsignal(sig) for sig in (signal.SIGINT, signal.SIGTERM)}
    signal.signal(signal.SIGTERM, _terminate)
    if previous[signal.SIGINT] == signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        for sig, handler in previous.items():
            if handler is not None:  # None: a handler installed from C, which Python cannot set
                signal.signal(sig, handler)


def exit_status(interrupt: KeyboardInterrupt) -> int:
    """128 + the signal: 143 for SIGTERM, 130 for Ctrl-C."""
    return 128 + signal.SIGTERM if isinstance(interrupt, Terminated) else INTERRUPTED
