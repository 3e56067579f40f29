"""``nanolang run FILE --arg k=v ... [--model M | --server URL] [--program P] [--seed N]``.

Prints the program's return value as one line of JSON, last on stdout; logs go to stderr.
``--arg`` values parse as JSON where they can (numbers, lists, true/false), else as strings.
``--trace FILE`` writes the request graph the instance ran as JSON
(``nanolang.graph.instance_trace``).
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
from pathlib import Path
from typing import Any

from nanolang.api.program import entry
from nanolang.cli.common import load_module, report
from nanolang.graph.instance_trace import trace_record
from nanolang.run.arguments import bind_args
from nanolang.run.executor import Executor
from nanolang.run.tools import load_tools
from nanolang.syntax.errors import NanoError


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("run", help="run a program and print its value as JSON")
    parser.add_argument("file")
    parser.add_argument(
        "--arg", action="append", default=[], metavar="K=V", help="a program argument"
    )
    parser.add_argument(
        "--model", default=None, help="model directory (default: the bundled demo model)"
    )
    parser.add_argument(
        "--program", default=None, help="which program (default: main, else the first)"
    )
    parser.add_argument("--seed", type=int, default=None, help="derive every gen's seed from this")
    parser.add_argument(
        "--server", default=None, help="URL of a `nanolang serve` server to run against"
    )
    parser.add_argument(
        "--trace",
        default=None,
        metavar="FILE",
        help="write the request graph the instance ran (nodes, edges, tokens, timings) as JSON",
    )
    parser.add_argument(
        "--stream", action="store_true", help="print the text on stdout as it is generated"
    )
    parser.add_argument(
        "--tools",
        default=None,
        metavar="PYFILE",
        help="a Python file whose functions implement the program's `tool` declarations",
    )
    parser.set_defaults(handler=handle)


def parse_args_list(items: list[str]) -> dict[str, Any]:
    """``["k=v", ...]`` to a dict; values as JSON when they parse, else the raw string."""
    args: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            raise ValueError(f"--arg expects K=V, got {item!r}")
        try:
            args[key] = json.loads(raw)
        except json.JSONDecodeError:
            args[key] = raw
    return args


def handle(args: argparse.Namespace) -> int:
    module = load_module(args.file)
    if module is None:
        return 1
    try:
        program_args = parse_args_list(args.arg)
        program = entry(module, args.program)
        bind_args(program.definition, program_args)
        tools = load_tools(args.tools, module)
        if args.trace is not None:
            check_writable(Path(args.trace))
        executor = Executor(module, _backend(args.model, args.server), seed=args.seed, tools=tools)
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except NanoError as exc:
        report(exc.with_source(module.source))
        return 1
    if args.stream:
        executor.on_text = lambda _, delta: print(delta, end="", flush=True)
    try:
        outcome = asyncio.run(executor.run(program.name, program_args))
    finally:
        executor.backend.close()
    if args.stream:
        print()
    if args.trace is not None:
        text = json.dumps(trace_record(program.name, outcome), indent=2, ensure_ascii=False)
        try:
            Path(args.trace).write_text(text + "\n", encoding="utf-8")
        except OSError as exc:  # the result is still printed below
            print(f"error: cannot write the trace: {exc}", file=sys.stderr)
    if outcome.error is not None:
        report(outcome.error)
        return 1
    print(json.dumps(outcome.value, ensure_ascii=False))
    return 0


def check_writable(path: Path) -> None:
    """Refuse an output path whose folder is missing before any model call is spent."""
    if not path.parent.is_dir():
        raise ValueError(f"--trace {path}: folder {path.parent} does not exist")


def _backend(model: str | None, server: str | None = None) -> Any:
    if server is not None:
        if model is not None:
            raise ValueError("give --model or --server, not both (the server chose its model)")
        from nanolang.backends import HTTP

        return HTTP(server)
    from nanolang.backends.local import LocalBackend
    from nanolang.demo import model_dir

    return LocalBackend.from_model(model if model is not None else model_dir())
