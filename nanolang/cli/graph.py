"""``nanolang graph FILE [--format text|json|dot]``: print the request graph on stdout."""

from __future__ import annotations

import argparse
from typing import Any

from nanolang.cli.common import load_module
from nanolang.graph.builder import build_graph
from nanolang.graph.render import to_dot, to_json_text, to_text

RENDERERS = {"text": to_text, "json": to_json_text, "dot": to_dot}


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("graph", help="print the request graph")
    parser.add_argument("file")
    parser.add_argument("--format", choices=sorted(RENDERERS), default="text")
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    module = load_module(args.file)
    if module is None:
        return 1
    print(RENDERERS[args.format](build_graph(module)), end="")
    return 0
