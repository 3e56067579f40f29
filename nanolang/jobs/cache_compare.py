"""``python -m nanolang.jobs.cache_compare``: programs with the prefix cache on vs off.

For each program of the suite, the same rows run twice in one process on fresh engines, once with
``enable_prefix_caching=False`` and once with it on, and the engine's own counters are compared:
prompt tokens computed (prefill work), the cache hit rate, and end-to-end time. Results (values)
are compared too: the cache must not change them.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

from nanolang.api.program import load
from nanolang.backends.local import LocalBackend
from nanolang.demo import model_dir
from nanolang.demo.suite import SUITE, SuiteEntry
from nanolang.jobs.dataset import read_rows

DEFAULT_PROGRAMS = ("mmlu", "tree_of_thought", "chat")


def run_once(entry: SuiteEntry, args: list[dict[str, Any]], model: str, caching: bool) -> dict:
    backend = LocalBackend.from_model(model, enable_prefix_caching=caching)
    try:
        program = load(entry.path, entry.program)
        start = time.perf_counter()
        outcomes = program.run_batch_outcomes(args, progress=False, backend=backend, seed=0)
        seconds = time.perf_counter() - start
        engine = backend.llm.engine
        cache = engine.blocks.cache
        return {
            "seconds": round(seconds, 3),
            "prompt_tokens_computed": engine.stats.prompt_tokens_computed,
            "hit_rate": round(cache.stats.hit_rate, 3) if cache is not None else None,
            "values": [o.value if o.error is None else f"error: {o.error}" for o in outcomes],
        }
    finally:
        backend.close()


def compare(entry: SuiteEntry, rows: int, model: str) -> dict[str, Any]:
    args = [r.args for r in read_rows(entry.data_path)[:rows]]
    off = run_once(entry, args, model, caching=False)
    on = run_once(entry, args, model, caching=True)
    same = sum(a == b for a, b in zip(off["values"], on["values"], strict=True))
    return {
        "program": entry.name,
        "rows": len(args),
        "prefill_tokens_off": off["prompt_tokens_computed"],
        "prefill_tokens_on": on["prompt_tokens_computed"],
        "prefill_saved_pct": round(
            100 * (1 - on["prompt_tokens_computed"] / max(1, off["prompt_tokens_computed"])), 1
        ),
        "seconds_off": off["seconds"],
        "seconds_on": on["seconds"],
        "speedup": round(off["seconds"] / on["seconds"], 2),
        "hit_rate": on["hit_rate"],
        "identical_values": same,
    }


def markdown(records: list[dict[str, Any]]) -> str:
    head = ["program", "rows", "prefill tokens (off → on)", "saved", "cache hit rate",
            "seconds (off → on)", "speed-up", "identical results"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in records:
        cells = [
            r["program"], r["rows"], f'{r["prefill_tokens_off"]:,} → {r["prefill_tokens_on"]:,}',
            f'{r["prefill_saved_pct"]}%', r["hit_rate"], f'{r["seconds_off"]} → {r["seconds_on"]}',
            f'{r["speedup"]}x', f'{r["identical_values"]}/{r["rows"]}',
        ]  # fmt: skip
        lines.append("| " + " | ".join(str(c) for c in cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m nanolang.jobs.cache_compare", description=__doc__)
    ap.add_argument("--programs", default=",".join(DEFAULT_PROGRAMS))
    ap.add_argument("--rows", type=int, default=32)
    ap.add_argument("--model", default=None, help="model directory (default: the demo model)")
    ap.add_argument("--out", type=Path, default=None, help="write the records as JSON")
    args = ap.parse_args(argv)
    by_name = {e.name: e for e in SUITE}
    names = args.programs.split(",")
    unknown = [n for n in names if n not in by_name]
    if unknown:
        print(f"unknown programs {unknown}; known: {', '.join(by_name)}", file=sys.stderr)
        return 2
    model = args.model or str(model_dir())
    try:
        records = [compare(by_name[n], args.rows, model) for n in names]
    except (ValueError, OSError) as exc:  # a model directory that cannot be loaded, say
        print(f"error: {exc}", file=sys.stderr)
        return 2
    if args.out is not None:
        args.out.write_text(json.dumps(records, indent=2) + "\n")
    print(markdown(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
