"""An A/B of environment settings on the engine benchmark, in alternating processes of one call.

Some switches are read once per process (``NANOLANG_KV_ORDER``, ``NANOLANG_KV_SPLITS``,
``NANOLANG_KV_SPLIT_TARGET``, ``NANOLANG_KERNELS``, ``NANOLANG_PDL``; ``NANOLANG_DECODE_COPIES``
per engine), so their variants cannot share an engine
the way ``--decode-attention a,b`` does. This runs ``python -m runtime.bench ARGS`` once per
variant per round, variants alternating (A, B, A, B, ...) so that a drift of the machine falls
on both, until the rounds or the time budget run out, and keeps every record, tagged with its
variant and round, in one JSON file; the table gives each workload's total tokens/s per run,
the mean per variant, its ratio to the first variant, and the mean decode-step milliseconds by
batch size.

    PYTHONPATH=.:bench python bench/env_ab.py --out $OUT/ab.json --budget 470 \\
        --variant NANOLANG_KV_ORDER=batch --variant NANOLANG_KV_ORDER=longest -- \\
        --model llama-3-8b --workloads sharegpt:256,lmsys:256 --warmup-requests 32
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from statistics import mean
from typing import Any

NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def parse_variant(text: str) -> dict[str, str]:
    """``NAME=VALUE[,NAME=VALUE...]`` -> the variables it sets (ValueError: malformed)."""
    out: dict[str, str] = {}
    for part in text.split(","):
        name, sep, value = part.partition("=")
        if not sep or not NAME.fullmatch(name):
            raise ValueError(f"--variant {text!r}: expected NAME=VALUE[,NAME=VALUE...]")
        out[name] = value
    return out


def label(env: dict[str, str]) -> str:
    return ",".join(f"{k}={v}" for k, v in env.items())


def run_once(
    env: dict[str, str], bench_args: list[str], out: Path, log: Path, timeout: float
) -> tuple[int, list[dict[str, Any]]]:
    """One benchmark process with ``env`` added: its exit code and the records it wrote (a
    process stopped by the timeout gets SIGINT, which keeps the workloads it finished)."""
    cmd = [sys.executable, "-m", "runtime.bench", *bench_args, "--out", str(out)]
    with log.open("a") as f:
        f.write(f"$ {label(env)} {' '.join(cmd)}\n")
        f.flush()
        proc = subprocess.Popen(cmd, env={**os.environ, **env}, stdout=f, stderr=f)
        try:
            rc = proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            proc.send_signal(2)
            try:
                rc = proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                rc = proc.wait()
    records = json.loads(out.read_text()) if out.exists() else []
    return rc, [r for r in records if isinstance(r, dict) and "workload" in r]


def summarize(records: list[dict[str, Any]], variants: list[str]) -> dict[str, Any]:
    """Per workload: each variant's total tokens/s (every run), their mean, the ratio of that
    mean to the first variant's, and the mean decode-step ms per batch-size range."""
    out: dict[str, Any] = {}
    for workload in dict.fromkeys(r["workload"] for r in records):
        rows: dict[str, Any] = {}
        for v in variants:
            mine = [r for r in records if r["workload"] == workload and r["variant"] == v]
            if not mine:
                continue
            buckets: dict[str, list[float]] = {}
            outside: dict[str, list[float]] = {}
            for r in mine:
                for name, b in (r.get("decode_steps_by_batch") or {}).items():
                    buckets.setdefault(name, []).append(b["mean_ms"])
                for name, b in (r.get("decode_device_by_batch") or {}).items():
                    outside.setdefault(name, []).append(b["outside_graph_ms"])
            rows[v] = {
                "total_tokens_per_s": [r["total_tokens_per_s"] for r in mine],
                "mean": round(mean(r["total_tokens_per_s"] for r in mine), 1),
                "decode_step_ms": {k: round(mean(x), 3) for k, x in buckets.items()},
            }
            if outside:  # replayed decode steps' device time outside the graph (CUDA only)
                rows[v]["outside_graph_ms"] = {k: round(mean(x), 3) for k, x in outside.items()}
        base = rows.get(variants[0])
        for row in rows.values():
            row["ratio"] = round(row["mean"] / base["mean"], 4) if base else None
        out[workload] = rows
    return out


def table(summary: dict[str, Any]) -> str:
    """The summary as a Markdown table; a column of the replayed decode steps' device time
    outside the graph when the records have it."""
    rows_all = [row for rows in summary.values() for row in rows.values()]
    device = any("outside_graph_ms" in row for row in rows_all)
    head = "| workload | variant | total tok/s (runs) | mean | / first | decode step ms by batch |"
    lines = [head + (" outside graph ms by batch |" if device else ""),
             "| --- " * (7 if device else 6) + "|"]  # fmt: skip
    for workload, rows in summary.items():
        for v, row in rows.items():
            runs = " / ".join(f"{x:,.0f}" for x in row["total_tokens_per_s"])
            steps = ", ".join(f"{k}: {ms}" for k, ms in row["decode_step_ms"].items())
            ratio = "-" if row["ratio"] is None else f"{row['ratio']:.3f}x"
            line = f"| {workload} | {v} | {runs} | {row['mean']:,.0f} | {ratio} | {steps} |"
            if device:
                out = ", ".join(f"{k}: {ms}" for k, ms in row.get("outside_graph_ms", {}).items())
                line += f" {out or '-'} |"
            lines.append(line)
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    ours, bench_args = (argv[: argv.index("--")], argv[argv.index("--") + 1 :]) if "--" in argv \
        else (argv, [])  # fmt: skip
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--variant", action="append", default=[], help="NAME=VALUE[,NAME=VALUE...]")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--budget", type=float, default=470.0, help="seconds for every process")
    ap.add_argument("--min-run", type=float, default=60.0, help="no process on less than this")
    ap.add_argument("--out", type=Path, required=True)
    args = ap.parse_args(ours)
    try:
        envs = [parse_variant(v) for v in args.variant]
    except ValueError as err:
        ap.error(str(err))
    if len(envs) < 2 or args.rounds < 1 or not bench_args:
        ap.error("give two or more --variant, --rounds >= 1, and the benchmark's args after --")
    if not (args.budget > 0 and args.min_run > 0):
        ap.error("--budget and --min-run must be positive seconds")
    if "--out" in bench_args:
        ap.error("the benchmark's --out is this script's to set")
    names = [label(e) for e in envs]
    log = args.out.with_suffix(".log")
    start, records, runs = time.monotonic(), [], []
    with tempfile.TemporaryDirectory() as work:
        for rnd in range(args.rounds):
            for i, env in enumerate(envs):
                left = args.budget - (time.monotonic() - start)
                if left < args.min_run:
                    print(f"stopped: {left:.0f} s left", file=sys.stderr)
                    break
                out = Path(work) / f"run-{rnd}-{i}.json"
                rc, mine = run_once(env, bench_args, out, log, left)
                for r in mine:
                    records.append({**r, "variant": names[i], "round": rnd})
                runs.append({"variant": names[i], "round": rnd, "rc": rc, "records": len(mine)})
                summary = summarize(records, names)
                args.out.write_text(json.dumps({
                    "command": "PYTHONPATH=.:bench python bench/env_ab.py " + " ".join(argv),
                    "variants": names, "runs": runs, "summary": summary, "records": records,
                }, indent=1) + "\n")  # fmt: skip
                print(f"[env_ab] round {rnd} {names[i]}: rc {rc}, {len(mine)} records, "
                      f"{time.monotonic() - start:.0f} s", file=sys.stderr, flush=True)  # fmt: skip
            else:
                continue
            break
    print(table(summarize(records, names)))
    return 0 if records else 1


if __name__ == "__main__":
    sys.exit(main())
