"""``nanolang`` command line: the parser, with one module per subcommand beside this one."""

from __future__ import annotations

import argparse
import logging
import sys

from nanolang.cli import batch, bench, check, eval, graph, run, serve, tune

SUBCOMMANDS = {
    "batch": batch,
    "bench": bench,
    "check": check,
    "eval": eval,
    "graph": graph,
    "run": run,
    "serve": serve,
    "tune": tune,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="nanolang",
        description="nanolang programs (check, graph, run, eval, batch), the server (serve) and "
        "the engine's benchmark and pipeline search (bench, tune)",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging on stderr")
    sub = parser.add_subparsers(dest="command", required=True)
    for module in SUBCOMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    """Entry point; returns the process exit status (0 ok, 1 program error, 2 usage, 130
    interrupted by Ctrl-C: one line on stderr, not a traceback)."""
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.WARNING,
        stream=sys.stderr,
        format="%(levelname)s %(name)s: %(message)s",
    )
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print(f"nanolang {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
