"""Command-line options shared by ``nanolang eval`` and ``nanolang batch``."""

from __future__ import annotations

import argparse
from pathlib import Path

from nanolang.jobs.resume import ResumeOptions
from nanolang.jobs.shard import Shard


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
        "--shard", type=Shard.parse, default=None, metavar="I/N",
        help="run only shard I of N (0-based) of the rows; concatenate the shards' outputs",
    )  # fmt: skip
    parser.add_argument(
        "--report", type=Path, default=None, metavar="FILE.html",
        help="also write the summary and latency histograms as HTML",
    )  # fmt: skip
    parser.add_argument("--quiet", action="store_true", help="log lines instead of a live bar")


def resume_options(args: argparse.Namespace) -> ResumeOptions:
    return ResumeOptions(restart=args.restart, retry_failed=args.retry_failed)
