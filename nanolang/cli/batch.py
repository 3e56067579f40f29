"""``nanolang batch IN.jsonl OUT.jsonl [--model M | --server URL] [--model-name NAME]
[--restart | --retry-failed] [--shard I/N] [--report R.html] [--quiet]``.

Answers every request of an OpenAI batch input file (``custom_id``, ``method``, ``url`` =
``/v1/chat/completions`` or ``/v1/completions``, ``body``) with the server's own request
handling, and appends one line of OpenAI's batch output format per request to OUT, fsynced, as
each finishes; the same command again resumes by ``custom_id`` (``nanolang.jobs.batch``). Exit
status: 0 when the job ran to the end (failed requests are counted, not fatal), 1 when it could
not start, every request of the run failed, or ``--max-errors`` stopped it.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from nanolang.cli.common import holding_results
from nanolang.jobs.batch import (
    BATCH_LINES,
    BatchRunner,
    batch_row_stats,
    local_client_factory,
    remote_client_factory,
)
from nanolang.jobs.batch_input import BatchRow, read_requests
from nanolang.jobs.dataset import DatasetError
from nanolang.jobs.fingerprint import FingerprintMismatch, kept_fingerprints
from nanolang.jobs.options import (
    add_job_options,
    add_run_options,
    cluster_options,
    resume_options,
    run_distributed,
)
from nanolang.jobs.progress import JobProgress, interrupted
from nanolang.jobs.report import write_report
from nanolang.jobs.results import ResultLog, iter_results, last_per_id
from nanolang.jobs.resume import prepare
from nanolang.jobs.row_file import RowRef, StreamedRows
from nanolang.jobs.runner import JobWriter, RunStats, run_local
from nanolang.jobs.signals import exit_status
from nanolang.jobs.summary import (
    RowStats,
    error_kinds,
    print_summary,
    summarize_stats,
    summary_rows,
)

API_KEY_ENV = "NANOLANG_API_KEY"


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("batch", help="answer an OpenAI batch file, resumably")
    parser.add_argument("input", type=Path, help="OpenAI batch input (JSONL requests)")
    parser.add_argument("output", type=Path, help="OpenAI batch output (JSONL, appended)")
    parser.add_argument("--model", default=None, help="model directory (default: the demo model)")
    parser.add_argument("--model-name", default="", help="the model id requests name "
                        "(default: the model directory's name)")  # fmt: skip
    parser.add_argument("--server", default=None, help="URL of an OpenAI-compatible server")
    add_run_options(parser, "requests")
    add_job_options(parser)
    parser.set_defaults(handler=handle)


def model_path(model: str | None) -> str:
    from nanolang.demo import model_dir

    return str(model if model is not None else model_dir())


def make_runner(args: argparse.Namespace) -> BatchRunner:
    if args.server is not None and args.model is not None:
        raise ValueError("give --model or --server, not both (the server chose its model)")
    if args.server is not None:
        from nanolang.backends.retry import RetryPolicy

        client = remote_client_factory(args.server, os.environ.get(API_KEY_ENV))
        return BatchRunner(client, RetryPolicy(), target=args.server)
    from nanolang.backends.local import LocalBackend

    path = model_path(args.model)
    backend = LocalBackend.from_model(path, device=args.device, dtype=args.dtype)
    name = args.model_name or Path(path).name
    return BatchRunner(local_client_factory(backend, name), backend=backend)


def handle(args: argparse.Namespace) -> int:
    """The job, holding its results file for its whole run (one job per results file)."""
    return holding_results(args.output, lambda: run_job(args))


def run_job(args: argparse.Namespace) -> int:
    try:
        # the one pass over the input: each request checked, its RequestFacts kept
        rows = read_requests(args.input)
        expected = kept_fingerprints(rows.refs)
        rows = rows.ordered(group_key)  # prefix groups side by side (their refs; none read)
        if args.shard:
            rows = args.shard.select_streamed(rows)
        ids = set(rows.ids)  # --restart / --retry-failed touch these only
        options = resume_options(args)
        note = prepare(args.output, expected, BATCH_LINES, options, [args.input], ids, args.report)
        cluster = cluster_options(args) if args.ray is not None else None
    except (DatasetError, FingerprintMismatch, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if note:
        print(note, file=sys.stderr)
    title = f"batch {args.input.name}"
    runner = None
    try:
        # the model loads before the progress bar starts: its clock, rate and ETA are the rows'
        runner = None if cluster is not None else make_runner(args)
        with ResultLog(args.output, key="custom_id") as results:
            pending = sum(1 for i in rows.ids if i not in results.done)
            with JobProgress(title, pending, args.quiet) as progress:
                writer = JobWriter(results, args.max_errors, progress.advance)
                if cluster is None:
                    assert runner is not None
                    stats = run_local(runner, rows, writer, args.concurrency)
                else:
                    stats = run_distributed(replica_spec(args), rows, group_key, writer,
                                            cluster)  # fmt: skip
    except (ValueError, OSError) as exc:  # a model that cannot load, a cluster not reached
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        print(interrupted(args.output, "custom_id", set(rows.ids)), file=sys.stderr)
        return exit_status(stop)
    finally:
        if runner is not None and runner.backend is not None:
            runner.backend.close()
    return finish(args, title, rows, stats)


def replica_spec(args: argparse.Namespace) -> Any:
    from nanolang.jobs.cluster import ReplicaSpec

    path = str(Path(model_path(args.model)).resolve())
    return ReplicaSpec(
        kind="batch",
        model=path,
        device=args.device,
        dtype=args.dtype,
        concurrency=args.concurrency,
        model_name=args.model_name or Path(path).name,
    )


def group_key(ref: RowRef) -> str:
    """Requests of one prefix group run side by side, so the prefix cache serves them (a
    stable sort: in file order within a group); the key the scan kept."""
    return str(ref.kept.group)


def finish(
    args: argparse.Namespace, title: str, rows: StreamedRows[BatchRow], stats: RunStats
) -> int:
    url_of = {ref.id: ref.kept.url for ref in rows.refs}  # kept by the scan: no row is read

    def stats_of(line: Mapping[str, Any]) -> tuple[str, RowStats]:
        return url_of[str(line["custom_id"])], batch_row_stats(line)

    # streamed: a line at a time, and per request only its stats are kept
    mine = last_per_id(iter_results(args.output), "custom_id", url_of, stats_of)
    summary = summarize_stats(len(rows), [row_stats for _, row_stats in mine])
    print_summary(f"{title} -> {args.output}", summary, stats)
    if args.report is not None:
        latencies: dict[str, list[float]] = {}
        for endpoint, row_stats in mine:
            latencies.setdefault(endpoint, []).append(row_stats.latency_s)
        write_report(args.report, title, summary_rows(summary, stats), latencies,
                     error_kinds(summary))  # fmt: skip
    if stats.stopped:
        print(f"error: stopped: {stats.stopped}", file=sys.stderr)
        return 1
    if stats.finished and stats.failed == stats.finished:
        print(f"error: all {stats.failed} requests of this run failed", file=sys.stderr)
        return 1
    return 0
