"""Batch evaluation jobs: a program over a JSONL dataset, resumable, scored at the end.

The CLI is ``nanolang eval`` (``nanolang.cli.eval``); from Python, ``read_rows`` gives the
dataset's rows streamed from the file (``StreamedRows``), ``EvalJob`` runs rows into a
``ResultLog`` and ``summarize`` scores the results (``iter_results`` streams them from
the file, a line at a time) with one of ``METRICS``.
"""

from nanolang.jobs.dataset import DatasetError, Row, read_rows
from nanolang.jobs.job import EvalJob, JobConfig
from nanolang.jobs.job_files import check_job_files
from nanolang.jobs.metrics import METRICS
from nanolang.jobs.results import Result, ResultLog, iter_results, load_results, repair
from nanolang.jobs.row_file import StreamedRows
from nanolang.jobs.runner import RunStats, TooManyErrors
from nanolang.jobs.summary import Summary, summarize

__all__ = [
    "METRICS",
    "DatasetError",
    "EvalJob",
    "JobConfig",
    "Result",
    "ResultLog",
    "Row",
    "RunStats",
    "StreamedRows",
    "Summary",
    "TooManyErrors",
    "check_job_files",
    "iter_results",
    "load_results",
    "read_rows",
    "repair",
    "summarize",
]
