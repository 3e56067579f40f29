"""One job per results file: an exclusive lock held from resuming to the last row.

Two jobs appending to one results file (the same command started twice, a requeued job while
the first still runs) would both run the rows pending when they started and write them twice,
and one's start-up repair could cut the other's half-written line. ``JobLock`` holds an
exclusive ``flock`` on ``OUT.lock`` (beside the results: ``--restart`` and ``--retry-failed``
rename a new results file over the old one, so the results file itself cannot carry the lock)
and names the holder's pid to the job refused. The lock file is removed at the end.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
from pathlib import Path
from types import TracebackType


class ResultsInUse(RuntimeError):
    """Another running job holds the results file."""


class JobLock:
    """Context manager: the exclusive right to write ``path``; ``ResultsInUse`` when another
    process (or another ``JobLock`` in this one) has it."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.lock_path = path.with_name(path.name + ".lock")
        self._fd: int | None = None

    def __enter__(self) -> JobLock:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        while True:
            fd = os.open(self.lock_path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                holder = os.read(fd, 32).decode(errors="replace").strip() or "?"
                os.close(fd)
                raise ResultsInUse(
                    f"{self.path} is being written by another job (pid {holder}); "
                    "one job per results file: wait for it, or stop it and rerun"
                ) from None
            if self._still_linked(fd):  # not a lock file its last holder just removed
                break
            os.close(fd)
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        self._fd = fd
        return self

    def _still_linked(self, fd: int) -> bool:
        try:
            return os.stat(self.lock_path).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            return False

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if self._fd is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.lock_path)  # while still holding it (see _still_linked)
        os.close(self._fd)
        self._fd = None
