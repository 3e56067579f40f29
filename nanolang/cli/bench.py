"""``nanolang bench``: offline throughput of the engine with rooflines (see runtime.bench);
``nanolang bench --programs``: multi-call programs in three modes (see nanolang.bench)."""

from __future__ import annotations

import argparse
import shlex
import sys
from typing import Any


def add_parser(sub: Any) -> None:
    from runtime.bench.options import build_parser  # argparse only: no torch at start-up

    parser = sub.add_parser(
        "bench", help="offline throughput: fixed and synthetic workloads, rooflines, JSON results"
    )
    build_parser(parser)
    from nanolang.bench.cli import add_arguments

    add_arguments(parser)
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    import logging

    argv = sys.argv[sys.argv.index("bench") + 1 :] if "bench" in sys.argv else []
    command = "nanolang bench " + shlex.join(argv)
    if args.programs is not None:  # multi-call programs in three modes (nanolang.bench)
        from nanolang.bench.cli import execute as execute_programs

        return execute_programs(args, command)
    from runtime.bench.__main__ import execute, stopped_by_signals

    logging.getLogger().setLevel(logging.INFO)
    with stopped_by_signals():  # SIGINT / SIGTERM keep the finished workloads, as Ctrl-C does
        return execute(args, command)
