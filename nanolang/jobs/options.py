"""Command-line options shared by ``nanolang eval`` and ``nanolang batch``."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from nanolang.jobs.dispatch import ClusterOptions
from nanolang.jobs.resume import ResumeOptions
from nanolang.jobs.row_file import RowRef, StreamedRows
from nanolang.jobs.runner import JobWriter, RunStats
from nanolang.jobs.shard import Shard


def at_least(low: int) -> Callable[[str], int]:
    """An argparse type: an integer ``>= low`` (``--concurrency 0`` left every row waiting for
    a slot that never came: the job hung)."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < low:
            raise argparse.ArgumentTypeError(f"must be at least {low}, got {value}")
        return value

    return parse


def number_above(low: float, inclusive: bool = False) -> Callable[[str], float]:
    """An argparse type: a number ``> low`` (``>= low`` when ``inclusive``)."""

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
        if not (value >= low if inclusive else value > low):
            word = "at least" if inclusive else "more than"
            raise argparse.ArgumentTypeError(f"must be {word} {low:g}, got {text}")
        return value

    return parse


positive_float = number_above(0.0)


def shard_arg(text: str) -> Shard:
    """``Shard.parse`` for argparse, which shows an ``ArgumentTypeError``'s message (a
    ``ValueError``'s became 'invalid parse value')."""
    try:
        return Shard.parse(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def add_run_options(parser: argparse.ArgumentParser, unit: str) -> None:
    """``--max-errors`` and ``--concurrency`` (``unit``: what runs concurrently)."""
    parser.add_argument(
        "--max-errors", type=at_least(0), default=None, metavar="N",
        help="stop once more than N have failed",
    )  # fmt: skip
    parser.add_argument("--concurrency", type=at_least(1), default=64, help=f"{unit} in flight")


def add_job_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--restart",
        action="store_true",
        help="delete the results already in the output file and start over",
    )
    parser.add_argument(
        "--retry-failed", action="store_true", help="run the rows that failed earlier again"
    )
    parser.add_argument(
        "--shard", type=shard_arg, default=None, metavar="I/N",
        help="run only shard I of N (0-based) of the rows; concatenate the shards' outputs",
    )  # fmt: skip
    parser.add_argument(
        "--report", type=Path, default=None, metavar="FILE.html",
        help="also write the summary and latency histograms as HTML",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="log lines instead of a live bar")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or auto (default: cpu)")
    parser.add_argument("--dtype", default="float32", help="auto, float32, float16, bfloat16")
    parser.add_argument(
        "--ray", nargs="?", const="", default=None, metavar="ADDRESS",
        help="run on a Ray cluster (ADDRESS, e.g. 10.0.0.5:6379; without it: a local cluster "
        "or $RAY_ADDRESS), one engine replica per GPU or per CPU slot",
    )  # fmt: skip
    parser.add_argument("--replicas", type=at_least(1), default=None, help="with --ray: how many")
    parser.add_argument(
        "--replica-cpus", type=positive_float, default=1.0, help="with --ray: CPUs per replica"
    )
    parser.add_argument(
        "--chunk-rows", type=at_least(1), default=16,
        help="with --ray: rows handed to a replica at once",
    )  # fmt: skip


def cluster_options(args: argparse.Namespace) -> ClusterOptions:
    """The ``--ray`` options (raises ``ValueError`` for ``--ray`` with ``--server``)."""
    if args.server is not None:
        raise ValueError("give --ray or --server, not both (--ray runs the engine on the cluster)")
    return ClusterOptions(
        address=args.ray or None,
        replicas=args.replicas,
        replica_cpus=args.replica_cpus,
        chunk_rows=args.chunk_rows,
    )


def resume_options(args: argparse.Namespace) -> ResumeOptions:
    return ResumeOptions(restart=args.restart, retry_failed=args.retry_failed)


def run_distributed(
    spec: Any,
    rows: StreamedRows[Any],
    group: Callable[[RowRef], str],
    writer: JobWriter,
    options: ClusterOptions,
) -> RunStats:
    """``cluster.run_on_ray``, with a clear error when Ray is not installed."""
    try:
        from nanolang.jobs.cluster import run_on_ray
    except ImportError as exc:
        raise ValueError(f"--ray needs Ray (pip install 'ray>=2.40'): {exc}") from None
    return run_on_ray(spec, rows, group, writer, options)
