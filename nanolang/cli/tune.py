"""``nanolang tune``: profile a model and search its NanoFlow pipeline plans (runtime.tune)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    from runtime.tune.options import build_parser  # argparse only: no torch at start-up

    parser = sub.add_parser(
        "tune", help="profile a model's layer and search pipeline plans per batch shape"
    )
    build_parser(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import logging

    from runtime.tune.__main__ import execute

    logging.getLogger().setLevel(logging.INFO)
    argv = sys.argv[sys.argv.index("tune") + 1 :] if "tune" in sys.argv else []
    return execute(args, "nanolang tune " + shlex.join(argv))
