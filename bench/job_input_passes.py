"""CPU time and peak memory of ``nanolang batch`` / ``nanolang eval`` over a generated 20 MB
input (2,000 rows of 10 KB), each command run as its own process against the code in ``--tree``
(several trees alternate, to compare versions of the code on one machine).

Two shapes of rows: ``text`` (each row one 10 KB string: a completion prompt, a dataset field;
as the streaming tests) and ``fields`` (each row about 10 KB of many small JSON values: 70 chat
turns; a list of 740 short strings), which cost more to parse and to fingerprint. Cases, in
order, each on the state the one before left: ``batch-all`` (every request sent to a stub server
on loopback, run in this process), ``batch-done`` (the same command again: every request
finished, so the job is its passes over the input and the results), ``eval-shard`` (``--group-by
subject --shard 0/2``; the program makes no model call, and ``--server`` at the stub loads no
model), ``eval-rest`` (the same without ``--shard``: the other half runs) and ``eval-done``.
Each command runs in a child process after a warm-up job on a one-row input (imports done):
``job_cpu_s`` is the command's CPU time in that process (``time.process_time``), the median (and
the least) of ``--rounds`` sequences; ``one_row_cpu_s`` the same command's CPU time on the
one-row input (run a second time: what a job costs besides its rows); ``process_cpu_s`` the
child's whole user + system time (interpreter start, imports and warm-up too); ``maxrss_mb`` its
peak resident memory; ``job_py_peak_mb`` the most Python heap the command held (``tracemalloc``
started after the warm-up, in a separate sequence: tracing slows it).

    python bench/job_input_passes.py --tree before=/tmp/base --tree after=. --out result.json
    python bench/job_input_passes.py --table result.json    # the docs' table
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

ROWS = 2_000
PAD_CHARS = 10_000
TURNS = 70  # chat turns of a "fields" request (about 10 KB)
WORDS = 740  # short strings of a "fields" dataset row (about 10 KB)
SHAPES = ("text", "fields")
PROGRAM = "program main(x, pad) {\n    return int(x)\n}\n"
ANSWER = json.dumps({
    "id": "cmpl", "object": "text_completion", "model": "demo",
    "choices": [{"index": 0, "text": " ok", "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}).encode()  # fmt: skip

# runs ``nanolang ARGV`` in this process after a warm-up job on a one-row input (so imports
# are done): the job's own CPU seconds, or with tracemalloc its peak Python heap
CHILD = """
import json, os, sys, time, tracemalloc
import nanolang
from nanolang.cli import main
assert nanolang.__file__.startswith(os.environ["PYTHONPATH"]), nanolang.__file__
warm = json.loads(os.environ["BENCH_WARM"])
assert main(warm) == 0
start = time.process_time()
assert main(warm) == 0
one_row = time.process_time() - start
traced = os.environ["BENCH_TRACED"] == "1"
if traced:
    tracemalloc.start()
start = time.process_time()
status = main(sys.argv[1:])
cpu = time.process_time() - start
peak = tracemalloc.get_traced_memory()[1] if traced else 0
print("MEASURED", cpu, peak, one_row, file=sys.stderr)
sys.exit(status)
"""


@contextmanager
def stub_server() -> Iterator[str]:
    """A server on loopback answering every POST with one short completion."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.rfile.read(int(self.headers["Content-Length"]))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(ANSWER)))
            self.end_headers()
            self.wfile.write(ANSWER)

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def request_body(i: int, shape: str) -> dict[str, Any]:
    """About 10 KB: one long prompt ("text"), or 70 short chat turns ("fields")."""
    if shape == "text":
        return {"model": "demo", "prompt": f"{i} " + "q" * PAD_CHARS, "max_tokens": 1}
    turns = [{"role": ("user", "assistant")[t % 2], "content": f"{i} {t} " + "word " * 20}
             for t in range(TURNS)]  # fmt: skip
    return {"model": "demo", "messages": turns, "max_tokens": 1}


def pad(i: int, shape: str) -> Any:
    """About 10 KB: one long string ("text"), or 740 short strings ("fields")."""
    return "p" * PAD_CHARS if shape == "text" else [f"w{i}-{k:04d}" for k in range(WORDS)]


def make_inputs(folder: Path, shape: str) -> tuple[Path, Path, Path]:
    requests, data = folder / f"in-{shape}.jsonl", folder / f"d-{shape}.jsonl"
    url = "/v1/completions" if shape == "text" else "/v1/chat/completions"
    with requests.open("w", encoding="utf-8") as f:
        for i in range(ROWS):
            line = {"custom_id": f"r{i}", "method": "POST", "url": url,
                    "body": request_body(i, shape)}  # fmt: skip
            f.write(json.dumps(line) + "\n")
    with data.open("w", encoding="utf-8") as f:
        for i in range(ROWS):
            row = {"x": str(i), "pad": pad(i, shape), "subject": f"s{i % 7}", "expected": i}
            f.write(json.dumps(row) + "\n")
    program = folder / "to_int.nano"
    program.write_text(PROGRAM, encoding="utf-8")
    return requests, data, program


def first_line(path: Path) -> Path:
    small = path.with_name("small-" + path.name)
    small.write_bytes(path.read_bytes().split(b"\n", 1)[0] + b"\n")
    return small


Case = tuple[str, list[str], list[str]]  # name, argv, the warm-up's argv


def cases(folder: Path, url: str, shape: str) -> list[Case]:
    requests, data, program = make_inputs(folder, shape)

    def batch(src: Path, out: str) -> list[str]:
        return ["batch", str(src), str(folder / out), "--server", url, "--quiet"]

    def evaluate(src: Path, out: str) -> list[str]:
        return ["eval", str(program), "--data", str(src), "--out", str(folder / out),
                "--server", url, "--quiet", "--group-by", "subject"]  # fmt: skip

    warm_batch = [*batch(first_line(requests), f"w-{shape}.jsonl"), "--restart"]
    warm_eval = [*evaluate(first_line(data), f"wr-{shape}.jsonl"), "--restart"]
    out, results = f"out-{shape}.jsonl", f"r-{shape}.jsonl"
    return [
        (f"{shape}/batch-all", batch(requests, out), warm_batch),
        (f"{shape}/batch-done", batch(requests, out), warm_batch),
        (f"{shape}/eval-shard", [*evaluate(data, results), "--shard", "0/2"], warm_eval),
        (f"{shape}/eval-rest", evaluate(data, results), warm_eval),
        (f"{shape}/eval-done", evaluate(data, results), warm_eval),
    ]


def run(tree: Path, case: Case, traced: bool) -> dict[str, float]:
    """One command as a child process: the job's CPU seconds (and peak Python heap), the
    process's CPU seconds and peak RSS."""
    _, argv, warm = case
    env = {**os.environ, "PYTHONPATH": str(tree.resolve()), "BENCH_WARM": json.dumps(warm),
           "BENCH_TRACED": "1" if traced else "0"}  # fmt: skip
    command = [sys.executable, "-c", CHILD, *argv]
    # run in the tree: ``python -c`` puts the working directory first on sys.path
    # leaving the block closes the stderr pipe and waits for the child (on an error too)
    with subprocess.Popen(command, cwd=tree, env=env, stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True) as child:  # fmt: skip
        assert child.stderr is not None
        stderr = child.stderr.read()  # to its end: the child never waits on a full pipe
        _, status, usage = os.wait4(child.pid, 0)  # reaped here, for its resource usage
        child.returncode = os.waitstatus_to_exitcode(status)
    if child.returncode != 0:
        raise RuntimeError(f"{argv} exited {child.returncode}: {stderr[-2000:]}")
    measured = [line for line in stderr.splitlines() if line.startswith("MEASURED ")][-1]
    _, job_cpu, peak, one_row = measured.split()
    out = {
        "job_cpu_s": float(job_cpu),
        "one_row_cpu_s": float(one_row),
        "process_cpu_s": usage.ru_utime + usage.ru_stime,
        "maxrss_mb": usage.ru_maxrss / 1024,
    }
    if traced:
        out["py_peak_mb"] = int(peak) / 2**20
    return out


def sequence(tree: Path, url: str, traced: bool) -> dict[str, dict[str, float]]:
    out = {}
    for shape in SHAPES:
        with tempfile.TemporaryDirectory() as folder:
            for case in cases(Path(folder), url, shape):
                out[case[0]] = run(tree, case, traced)
    return out


def commit(tree: Path) -> str:
    found = subprocess.run(["git", "-C", str(tree), "rev-parse", "--short", "HEAD"],
                           capture_output=True, text=True, check=False)  # fmt: skip
    return found.stdout.strip() or "unknown"


def summary(runs: list[dict[str, dict[str, float]]], traced: dict[str, dict[str, float]]
            ) -> dict[str, Any]:  # fmt: skip
    out: dict[str, Any] = {}
    for name in runs[0]:

        def median(key: str, case: str = name) -> float:
            return round(statistics.median(r[case][key] for r in runs), 3)

        out[name] = {
            "job_cpu_s_median": median("job_cpu_s"),
            "job_cpu_s_min": round(min(r[name]["job_cpu_s"] for r in runs), 3),
            "job_cpu_s": [round(r[name]["job_cpu_s"], 3) for r in runs],
            "one_row_cpu_s_median": median("one_row_cpu_s"),
            "process_cpu_s_median": median("process_cpu_s"),
            "maxrss_mb": round(max(r[name]["maxrss_mb"] for r in runs), 1),
            "job_py_peak_mb": round(traced[name]["py_peak_mb"], 2),
        }
    return out


def table(result: dict[str, Any]) -> str:
    """A markdown table of a result: per case, each tree's median job CPU (the rounds' range)
    and Python heap peak."""
    trees = list(result["trees"])
    head = ["case"] + [f"{t}: job CPU s" for t in trees] + [f"heap peak MB ({' / '.join(trees)})"]
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for name in result["trees"][trees[0]]["cases"]:
        cases = [result["trees"][t]["cases"][name] for t in trees]
        cpu = [f"{c['job_cpu_s_median']:.3f} ({min(c['job_cpu_s']):.2f}-{max(c['job_cpu_s']):.2f})"
               for c in cases]  # fmt: skip
        peak = " / ".join(f"{c['job_py_peak_mb']:.2f}" for c in cases)
        lines.append("| " + " | ".join([name, *cpu, peak]) + " |")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--table", type=Path, default=None, metavar="RESULT.json",
                        help="print a result's markdown table and stop")  # fmt: skip
    parser.add_argument("--tree", action="append", metavar="LABEL=PATH",
                        help="code to measure (repeat: the trees alternate)")  # fmt: skip
    parser.add_argument("--rounds", type=int, default=5, help="CPU sequences per tree")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.table is not None:
        print(table(json.loads(args.table.read_text(encoding="utf-8"))))
        return
    if not args.tree:
        parser.error("give --tree LABEL=PATH (or --table)")
    trees = dict(spec.split("=", 1) for spec in args.tree)
    for label, tree in trees.items():
        if not (Path(tree) / "nanolang" / "__init__.py").is_file():
            parser.error(f"--tree {label}={tree}: no nanolang/ there")
    runs: dict[str, list[dict[str, dict[str, float]]]] = {label: [] for label in trees}
    with stub_server() as url:
        for _ in range(args.rounds):
            for label, tree in trees.items():
                runs[label].append(sequence(Path(tree), url, traced=False))
        traced = {label: sequence(Path(tree), url, traced=True) for label, tree in trees.items()}
    result: dict[str, Any] = {
        "what": __doc__.split("\n\n")[0].replace("\n", " "),
        "command": "python " + " ".join(sys.argv),
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores "
        f"(shared with other jobs), Python {platform.python_version()}",
        "rows": ROWS,
        "row_chars": PAD_CHARS,
        "trees": {
            label: {
                "path": tree,
                "commit": commit(Path(tree)),
                "cases": summary(runs[label], traced[label]),
            }
            for label, tree in trees.items()
        },
    }
    text = json.dumps(result, indent=2)
    print(text)
    if args.out is not None:
        args.out.write_text(text + "\n", encoding="utf-8")


if __name__ == "__main__":
    main()
