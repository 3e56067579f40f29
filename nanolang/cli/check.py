"""``nanolang check FILE...``: parse and statically check; no request is sent."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nanolang.cli.common import load_module


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("check", help="report syntax and static errors (file:line:column)")
    parser.add_argument("files", nargs="+", metavar="file", help="one or more .nano files")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    """Check every file (each one's errors, or its ok line, on stderr); 1 if any failed."""
    failed = 0
    for path in args.files:
        module = load_module(path)
        if module is None:
            failed += 1
            continue
        names = ", ".join(p.name for p in module.programs)
        noun = "program" if len(module.programs) == 1 else "programs"
        print(f"{path}: ok ({len(module.programs)} {noun}: {names})", file=sys.stderr)
    if failed and len(args.files) > 1:
        print(f"{failed} of {len(args.files)} files failed their checks", file=sys.stderr)
    return 1 if failed else 0
