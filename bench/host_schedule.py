"""Host time of one ``Scheduler.schedule()`` with N sequences decoding (no model, no device).

The scheduler of a real engine (its block manager and KV blocks) over N running sequences whose
prompts are computed: each call schedules N decodes, the work an iteration at a batch of N does
before any tensor is built. Fastest and median of ``--repeats`` calls (on a shared machine the
fastest is the one least disturbed by other work); JSON on stdout and to ``--out``.
Usage (repo root): PYTHONPATH=. python bench/host_schedule.py --seqs 1000 --out FILE.json
"""

from __future__ import annotations

import argparse
import datetime
import json
import platform
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from runtime import LLM, SamplingParams
from runtime.tiny import make_tiny_model


def commit() -> str:
    """The commit of the ``runtime`` package imported (PYTHONPATH may point at another tree)."""
    import runtime

    here = Path(runtime.__file__).resolve().parents[1]
    out = subprocess.run(["git", "-C", str(here), "rev-parse", "--short", "HEAD"],
                         capture_output=True, text=True, check=False)  # fmt: skip
    return out.stdout.strip() or "unknown"


def cpu_record(benchmark: str, code: str | None, rows: list[Any], date: str) -> dict[str, Any]:
    """A CPU benchmark's JSON record: what ran, where, when, with which command line."""
    return {"benchmark": benchmark, "code": code or commit(), "device": "cpu",
            "machine": platform.processor() or platform.machine(), "date": date,
            "command": f"python bench/{benchmark}.py " + shlex.join(sys.argv[1:]),
            "rows": rows}  # fmt: skip


def emit(record: dict[str, Any], out: Path | None) -> None:
    """Print the record as JSON, and write it to ``out`` when given."""
    text = json.dumps(record, indent=2)
    if out is not None:
        out.write_text(text + "\n")
    print(text)


def measure(seqs: int, repeats: int, model_dir: Path) -> list[float]:
    llm = LLM(str(model_dir), dtype="float32", device="cpu", max_num_seqs=max(seqs, 1),
              max_num_batched_tokens=16 * seqs, enable_prefix_caching=False)  # fmt: skip
    sched = llm.engine.scheduler
    for i in range(seqs):
        params = SamplingParams(max_tokens=400, temperature=0.0, ignore_eos=True)
        llm.engine.add_request([5 + i % 50] * 16, params)
    for entry in sched.schedule().scheduled:  # admission: what a launch would then advance
        entry.seq.num_computed_tokens += entry.num_tokens
        entry.seq.output_token_ids.append(7)
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        out = sched.schedule()
        times.append(time.perf_counter() - t0)
    assert out.num_decode_seqs == seqs
    return times


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seqs", default="250,1000", help="comma list of batch sizes")
    ap.add_argument("--repeats", type=int, default=30)
    ap.add_argument("--out", type=Path, default=None)
    ap.add_argument("--code", default=None, help="what code ran (default: its git commit)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        model_dir = make_tiny_model(Path(tmp) / "tiny", arch="llama", seed=1)
        rows = []
        for n in args.seqs.split(","):
            times = measure(int(n), args.repeats, Path(model_dir))
            rows.append({"seqs": int(n), "min_ms": round(1e3 * min(times), 3),
                         "median_ms": round(1e3 * statistics.median(times), 3)})  # fmt: skip
    emit(cpu_record("host_schedule", args.code, rows, datetime.date.today().isoformat()), args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
