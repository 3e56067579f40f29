"""README.md, docs/architecture.md, docs/language.md and docs/programs.md name only command-line
flags that exist: each ``--flag`` they mention is in the ``--help`` of one of the project's
commands (docs/performance.md also names the bench/ scripts' flags and ones of earlier dates)."""

from __future__ import annotations

import argparse
import re
from collections.abc import Callable
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
DOCS = [ROOT / "README.md", *(ROOT / "docs" / n for n in ("architecture.md", "language.md",
                                                          "programs.md"))]  # fmt: skip
FLAG = re.compile(r"(?<![\w-])(--[a-z0-9][a-z0-9-]*)")
# flags of other programs the docs quote, with where
OTHERS = {"--head": "ray start --head", "--address": "ray start --address"}


def parser_flags(parser: argparse.ArgumentParser) -> set[str]:
    """Every option string of ``parser`` and of its subcommands."""
    flags: set[str] = set()
    for action in parser._actions:
        flags.update(s for s in action.option_strings if s.startswith("--"))
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                flags |= parser_flags(sub)
    return flags


def help_flags(main: Callable[[list[str]], object], capsys: pytest.CaptureFixture[str]) -> set[str]:
    with pytest.raises(SystemExit):
        main(["--help"])
    return set(FLAG.findall(capsys.readouterr().out))


def test_flags_in_docs_exist(capsys: pytest.CaptureFixture[str]) -> None:
    from nanolang.bench.__main__ import main as programs_bench
    from nanolang.cli.main import build_parser
    from runtime.__main__ import main as engine
    from runtime.tune import calibrate, promote, verify

    known = parser_flags(build_parser())
    for main in (engine, programs_bench, calibrate.main, promote.main, verify.main):
        known |= help_flags(main, capsys)
    missing = [
        f"{doc.name}:{n}: {flag}"
        for doc in DOCS
        for n, line in enumerate(doc.read_text(encoding="utf-8").splitlines(), 1)
        for flag in FLAG.findall(line)
        if flag not in known and flag not in OTHERS
    ]
    assert missing == []
