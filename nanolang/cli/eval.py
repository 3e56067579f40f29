"""``nanolang eval FILE --data D.jsonl --out R.jsonl [--model M | --server URL] [--program P]
[--metric exact|choice|json|contains|'expr: ...'] [--max-errors N] [--restart | --retry-failed]
[--shard I/N] [--report R.html] [--quiet]``.

Runs the program once per dataset row (rows give the arguments; ``expected`` the answer), all
rows concurrently on one executor. Each result is appended to ``--out`` and fsynced as its row
finishes, with the job's fingerprint; rerunning the same command skips the rows already there and
resumes (a results file of another program, dataset or seed is an error). The metric over every
result is printed at the end as a table. Exit status: 0 when the job ran to the end (failed rows
are counted, not fatal), 1 when it could not start, every row of the run failed, or
``--max-errors`` stopped it.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from nanolang.api.program import Program, entry
from nanolang.cli.common import holding_results, load_module, report
from nanolang.jobs.dataset import DatasetError, Row, read_rows
from nanolang.jobs.fingerprint import FingerprintMismatch, kept_fingerprints
from nanolang.jobs.job import EvalJob, JobConfig, row_facts
from nanolang.jobs.metrics import METRICS, declared_metric, resolve_metric
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
from nanolang.jobs.resume import EVAL_LINES, prepare
from nanolang.jobs.row_file import RowRef, StreamedRows
from nanolang.jobs.runner import JobWriter, RunStats
from nanolang.jobs.signals import exit_status
from nanolang.jobs.summary import error_kinds, print_summary, summarize, summary_rows
from nanolang.run.tools import check_tools
from nanolang.syntax import tree
from nanolang.syntax.errors import NanoError


def add_parser(sub: Any) -> None:
    parser = sub.add_parser("eval", help="run a program over a dataset, resumably, and score it")
    parser.add_argument("file")
    parser.add_argument("--data", required=True, type=Path, help="JSONL rows of arguments")
    parser.add_argument("--out", required=True, type=Path, help="JSONL results (appended)")
    parser.add_argument("--model", default=None, help="model directory (default: the demo model)")
    parser.add_argument("--server", default=None, help="URL of a `nanolang serve` server")
    parser.add_argument("--program", default=None, help="which program (default: main)")
    parser.add_argument(
        "--metric",
        default=None,
        help=f"{'|'.join(sorted(METRICS))} or 'expr: EXPRESSION' over output and expected "
        "(default: the file's '# metric:' comment, else exact)",
    )
    parser.add_argument("--expected-field", default="expected", help="the answer's field")
    add_run_options(parser, "instances")
    parser.add_argument("--seed", type=int, default=0, help="derive every gen's seed from this")
    parser.add_argument(
        "--tools", default=None, metavar="FILE.py",
        help="the Python functions of the program's `tool` declarations (a file of the host's)",
    )  # fmt: skip
    parser.add_argument(
        "--group-by", default=None, metavar="FIELD",
        help="with --ray or --shard: rows with equal FIELD share a prompt prefix (kept together)",
    )  # fmt: skip
    add_job_options(parser)
    parser.set_defaults(handler=handle)


def make_backend(
    model: str | None, server: str | None, device: str = "cpu", dtype: str = "float32"
) -> Any:
    if server is not None:
        if model is not None:
            raise ValueError("give --model or --server, not both (the server chose its model)")
        from nanolang.backends import HTTP

        return HTTP(server)
    from nanolang.backends.local import LocalBackend
    from nanolang.demo import model_dir

    path = model if model is not None else model_dir()
    return LocalBackend.from_model(path, device=device, dtype=dtype)


def handle(args: argparse.Namespace) -> int:
    """The job, holding its results file for its whole run (one job per results file)."""
    return holding_results(args.out, lambda: run_job(args))


def run_job(args: argparse.Namespace) -> int:
    module = load_module(args.file)
    if module is None:
        return 1
    metric = args.metric or declared_metric(module.source or "") or "exact"
    try:
        resolve_metric(metric)
        program = entry(module, args.program)
        config = JobConfig(
            program.name, args.seed, args.concurrency, args.max_errors
        ).with_tools(args.tools)  # fmt: skip
        check_tools(module, config.load_tools(module))  # before any row runs
        # the one pass over the dataset: each row checked, its RowFacts kept
        facts = row_facts(module, config, group_by(args.group_by))
        fields = meta_fields(module, program, args)
        rows = read_rows(args.data, args.expected_field, fields, facts)
        fingerprints = kept_fingerprints(rows.refs)
        if args.shard is not None:
            if args.group_by is not None:  # else the rows keep their file order
                rows = rows.ordered(group_key)
            rows = args.shard.select_streamed(rows)
        inputs = [args.data, Path(args.file), *([Path(args.tools)] if args.tools else [])]
        ids = set(rows.ids)  # --restart / --retry-failed touch this run's rows only
        options = resume_options(args)
        note = prepare(args.out, fingerprints, EVAL_LINES, options, inputs, ids, args.report)
        cluster = cluster_options(args) if args.ray is not None else None
    except (DatasetError, FingerprintMismatch, OSError, ValueError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except NanoError as exc:
        report(exc.with_source(module.source))
        return 1
    if note:
        print(note, file=sys.stderr)
    title = f"{Path(args.file).stem}:{program.name}"
    backend = None
    try:
        # the model loads before the progress bar starts: its clock, rate and ETA are the rows'
        if cluster is None:
            backend = make_backend(args.model, args.server, args.device, args.dtype)
        with ResultLog(args.out) as results:
            pending = sum(1 for i in rows.ids if i not in results.done)
            with JobProgress(title, pending, args.quiet) as progress:
                if cluster is None:
                    assert backend is not None
                    job = EvalJob(module, backend, config, results, on_result=progress.advance)
                    stats = job.run(rows)
                else:
                    spec = replica_spec(args, module, config)
                    writer = JobWriter(results, config.max_errors, progress.advance)
                    stats = run_distributed(spec, rows, group_key, writer, cluster)
    except (ValueError, OSError) as exc:  # a model that cannot load, a cluster not reached
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt as stop:
        print(interrupted(args.out, "id", set(rows.ids)), file=sys.stderr)
        return exit_status(stop)
    finally:
        if backend is not None:
            backend.close()
    return finish(args, title, rows, metric, stats)


def group_key(ref: RowRef) -> str:
    """A row's group key, as the scan kept it (``group_by``)."""
    return str(ref.kept.group)


def meta_fields(module: tree.Module, program: Program, args: argparse.Namespace) -> list[str]:
    """A ``--group-by`` field the program takes no parameter for is the rows' metadata, not an
    argument (as MMLU's ``subject``: every row failed with 'got unknown argument(s)')."""
    definition = module.get(program.name)
    params = {p.name for p in definition.params} if definition is not None else set()
    return [args.group_by] if args.group_by and args.group_by not in params else []


def group_by(field: str | None) -> Callable[[Row], str]:
    """Rows with the same value of ``field`` share a prompt prefix (one group without it)."""
    if field is None:
        return lambda row: ""
    return lambda row: json.dumps(row.meta.get(field, row.args.get(field)), sort_keys=True)


def replica_spec(args: argparse.Namespace, module: tree.Module, config: JobConfig) -> Any:
    from nanolang.demo import model_dir
    from nanolang.jobs.cluster import ReplicaSpec

    return ReplicaSpec(
        kind="eval",
        model=str(Path(args.model).resolve()) if args.model else str(model_dir()),
        device=args.device,
        dtype=args.dtype,
        concurrency=args.concurrency,
        program_file=module.file,
        program_source=module.source or "",
        program=config.program,
        seed=config.seed,
        tools_file=config.tools,
        tools_source=config.tools_source,
    )


def latency_s(result: Mapping[str, Any]) -> float:
    return float(result.get("time_s", 0.0))


def finish(
    args: argparse.Namespace, title: str, rows: StreamedRows[Row], metric: str, stats: RunStats
) -> int:
    summary = summarize(rows, iter_results(args.out), metric)  # a line at a time
    print_summary(f"{title} on {args.data}", summary, stats)
    if args.report is not None:
        latencies = last_per_id(iter_results(args.out), "id", set(rows.ids), latency_s)
        write_report(args.report, title, summary_rows(summary, stats), {title: latencies},
                     error_kinds(summary))  # fmt: skip
    if stats.stopped:
        print(f"error: stopped: {stats.stopped}", file=sys.stderr)
        return 1
    if stats.finished and stats.failed == stats.finished:
        print(f"error: all {stats.failed} rows of this run failed", file=sys.stderr)
        return 1
    return 0
