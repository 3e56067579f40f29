"""Measure the demo model on every program's dataset with ``nanolang eval`` and write the table
into docs/programs.md: ``python -m nanolang.demo.report [--model DIR]``.

Each entry runs the real CLI command shown in the table (in this process), from an empty
results file under ``programs/results/``; the accuracy is read back from that file with the
same metric. Nothing in the table is typed by hand.
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import time
from pathlib import Path

from nanolang.cli import main as cli_main
from nanolang.demo.suite import PROGRAMS_DIR, REPO, SUITE, SuiteEntry
from nanolang.jobs.dataset import read_rows
from nanolang.jobs.results import iter_results
from nanolang.jobs.summary import Summary, summarize

DOC = REPO / "docs" / "programs.md"
BEGIN, END = "<!-- results -->", "<!-- /results -->"


def command(item: SuiteEntry, out: Path, model: str | None) -> list[str]:
    argv = [
        "eval",
        str(item.path.relative_to(REPO)),
        "--data",
        str(item.data_path.relative_to(REPO)),
        "--out",
        str(out.relative_to(REPO)),
        "--metric",
        item.metric,
        "--quiet",
    ]
    if item.program != "main":
        argv += ["--program", item.program]
    if item.tools_path is not None:
        argv += ["--tools", str(item.tools_path.relative_to(REPO))]
    return argv + (["--model", model] if model else [])


def measure(item: SuiteEntry, model: str | None) -> tuple[Summary, float, str]:
    out = PROGRAMS_DIR / "results" / f"{item.name}.jsonl"
    out.parent.mkdir(exist_ok=True)
    out.unlink(missing_ok=True)
    argv = command(item, out, model)
    start = time.perf_counter()
    status = cli_main(argv)
    wall = time.perf_counter() - start
    if status != 0:
        raise RuntimeError(f"nanolang {' '.join(argv)} exited with {status}")
    rows = read_rows(item.data_path)
    return summarize(rows, iter_results(out), item.metric), wall, "nanolang " + " ".join(argv)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def machine() -> str:
    import torch

    return (
        f"{cpu_name()} CPU, {os.cpu_count()} cores (shared), Python {platform.python_version()}, "
        f"torch {torch.__version__}, engine on the CPU in float32"
    )


def table(results: list[tuple[SuiteEntry, Summary, float, str]]) -> str:
    lines = [
        "| program | workload | metric | accuracy | chance | failed | wall (with model load) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for item, summary, wall, _ in results:
        accuracy = f"{summary.accuracy:.1%} ({summary.correct}/{summary.scored})"
        lines.append(
            f"| `{item.name}` | {item.workload} | {item.metric} | {accuracy} | {item.chance} "
            f"| {summary.failed} | {wall:.1f}s |"
        )
    return "\n".join(lines)


def section(results: list[tuple[SuiteEntry, Summary, float, str]]) -> str:
    commands = "\n".join(cmd for *_, cmd in results)
    today = datetime.date.today().isoformat()
    return (
        f"{BEGIN}\nMeasured on {today} on {machine()}, by `python -m nanolang.demo.report`, "
        f"which ran these commands:\n\n```bash\n{commands}\n```\n\n{table(results)}\n{END}"
    )


def write_doc(text: str) -> None:
    doc = DOC.read_text(encoding="utf-8")
    head, _, rest = doc.partition(BEGIN)
    _, _, tail = rest.partition(END)
    DOC.write_text(head + text + tail, encoding="utf-8")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default=None, help="model directory (default: demo model)")
    args = parser.parse_args(argv)
    os.chdir(REPO)
    results = [(item, *measure(item, args.model)) for item in SUITE]
    write_doc(section(results))
    print(table(results))


if __name__ == "__main__":
    main()
