"""SIGTERM and SIGINT stop a job as Ctrl-C does, even where SIGINT was inherited ignored."""

from __future__ import annotations

import os
import signal
import time

import pytest

from nanolang.jobs.signals import Terminated, exit_status, interrupting_signals


def _wait_for_the_signal() -> None:
    deadline = time.monotonic() + 5
    while time.monotonic() < deadline:  # the handler runs between bytecodes of this loop
        time.sleep(0.01)
    raise AssertionError("no interrupt within 5 s")


def test_an_ignored_sigint_interrupts_inside_and_is_ignored_again_after() -> None:
    """A job started in the background by a non-interactive shell inherits SIGINT ignored:
    ``kill -INT`` must still stop it (exit 130), and the caller's setting comes back after."""
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        with pytest.raises(KeyboardInterrupt) as caught, interrupting_signals():
            assert signal.getsignal(signal.SIGINT) is signal.default_int_handler
            os.kill(os.getpid(), signal.SIGINT)
            _wait_for_the_signal()
        assert exit_status(caught.value) == 130
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
    finally:
        signal.signal(signal.SIGINT, previous)


def test_sigterm_raises_terminated_and_its_handler_is_restored() -> None:
    before = signal.getsignal(signal.SIGTERM)
    with pytest.raises(Terminated) as caught, interrupting_signals():
        os.kill(os.getpid(), signal.SIGTERM)
        _wait_for_the_signal()
    assert exit_status(caught.value) == 143
    assert signal.getsignal(signal.SIGTERM) == before


def test_a_handled_sigint_is_left_as_it_is() -> None:
    def mine(signum: int, frame: object) -> None:
        raise RuntimeError("the caller's handler")

    previous = signal.signal(signal.SIGINT, mine)
    try:
        with interrupting_signals():
            assert signal.getsignal(signal.SIGINT) is mine
    finally:
        signal.signal(signal.SIGINT, previous)
