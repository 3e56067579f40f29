"""``python -m nanolang.bench``: the program benchmark (same as ``nanolang bench --programs``)."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys

from nanolang.bench.cli import add_arguments, execute


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nanolang.bench", description=__doc__)
    add_arguments(ap, standalone=True)
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    command = "python -m nanolang.bench " + shlex.join(sys.argv[1:] if argv is None else argv)
    return execute(args, command)


if __name__ == "__main__":
    sys.exit(main())
