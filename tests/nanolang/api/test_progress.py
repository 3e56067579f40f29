"""The project's one progress bar: counts, token rate, and silence when disabled."""

from __future__ import annotations

import pytest

from nanolang.api.progress import ProgressBar
from nanolang.run.records import Outcome
from nanolang.syntax.errors import NanoRuntimeError


def test_counts_finished_failed_and_tokens(capsys: pytest.CaptureFixture[str]) -> None:
    with ProgressBar("job", 3, enabled=False, token_rate=True) as bar:
        bar.step(False, 10)
        bar.step(True, 0)
        bar.advance(Outcome(2, None, NanoRuntimeError("boom")))
    assert (bar.done, bar.failed, bar.tokens) == (3, 2, 10)
    assert bar.rate > 0
    assert capsys.readouterr().err == ""
