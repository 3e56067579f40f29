"""``nanolang check FILE``: parse and statically check; no request is sent."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nanolang.cli.common import load_module


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("check", help="report syntax and static errors (file:line:column)")
    parser.add_argument("file")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    module = load_module(args.file)
    if module is None:
        return 1
    names = ", ".join(p.name for p in module.programs)
    print(f"{args.file}: ok ({len(module.programs)} programs: {names})", file=sys.stderr)
    return 0
