"""``nanolang serve [--model M] [--host 127.0.0.1] [--port 8000] [--api-key K] [--tp N]``."""

from __future__ import annotations

import argparse
import sys
from typing import Any

from nanolang.jobs.options import at_least, number_above


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("serve", help="serve a model over HTTP (OpenAI-compatible + native)")
    parser.add_argument("--model", default=None, help="model directory (default: the tiny model)")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default: loopback)")
    parser.add_argument("--port", type=int, default=8000)
    parser.add_argument(
        "--api-key", default=None, help="require this bearer key (default: $NANOLANG_API_KEY)"
    )
    parser.add_argument("--model-name", default="", help="the model id clients send")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="auto, float32, float16, bfloat16")
    parser.add_argument(
        "--tp",
        type=at_least(1),
        default=1,
        help="tensor-parallel degree: the engine starts one worker process per GPU (default: 1)",
    )
    parser.add_argument(
        "--shutdown-timeout",
        type=number_above(0.0, inclusive=True),
        default=30.0,
        help="on SIGTERM / Ctrl-C, seconds requests in flight may run on before they are "
        "cancelled with a 503 (default: 30)",
    )
    parser.add_argument(
        "--max-choices",
        type=at_least(1),
        default=4096,
        help="the most choices one request may ask for (a completion's prompts times n; "
        "more is a 400) (default: 4096)",
    )
    parser.set_defaults(handler=handle)


def handle(args: argparse.Namespace) -> int:
    from nanolang.server import ServerConfig, serve

    try:
        config = ServerConfig.from_env(
            args.model,
            model_name=args.model_name,
            host=args.host,
            port=args.port,
            shutdown_timeout_s=args.shutdown_timeout,
            max_choices=args.max_choices,
            llm_kwargs={
                "device": args.device,
                "dtype": args.dtype,
                "tensor_parallel_size": args.tp,
            },
            **({"api_key": args.api_key} if args.api_key else {}),
        )
        serve(config)  # loads the model first: a bad --tp for it (heads, GPUs) is a ValueError
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return 0
