"""The program benchmark's records as a Markdown table (for stderr and docs/performance.md)."""

from __future__ import annotations

from typing import Any

COLUMNS = (
    ("program", "program"),
    ("memory_pressure", "pressure"),
    ("mode", "mode"),
    ("instances", "instances"),
    ("instances_per_s", "inst/s"),
    ("tokens_per_s", "tok/s"),
    ("prefill_tokens_computed", "prefill tok"),
    ("cache_hit_rate", "hit rate"),
    ("peak_kv_use", "peak KV"),
    ("latency_p50_s", "p50 s"),
    ("latency_p99_s", "p99 s"),
    ("preemptions", "preempt"),
)


def render(records: list[dict[str, Any]], ratios: list[dict[str, Any]] | None = None) -> str:
    lines = ["| " + " | ".join(h for _, h in COLUMNS) + " |", "|" + " --- |" * len(COLUMNS)]
    for r in records:
        lines.append("| " + " | ".join(str(r.get(k)) for k, _ in COLUMNS) + " |")
    repeated = [r for r in records if r.get("repeats", 1) > 1]
    if repeated:
        lines += ["", "| program | pressure | mode | runs | seconds of each run | median s |",
                  "| --- | --- | --- | --- | --- | --- |"]  # fmt: skip
        for r in repeated:
            runs = " / ".join(f"{s:.2f}" for s in r["repeat_seconds"])
            lines.append(
                f"| {r['program']} | {r['memory_pressure']} | {r['mode']} | {r['repeats']} | "
                f"{runs} | {r['seconds']:.2f} |"
            )
    if ratios:
        lines += ["", "| program | pressure | graph / naive | graph / independent |",
                  "| --- | --- | --- | --- |"]  # fmt: skip
        for row in ratios:
            lines.append(
                f"| {row['program']} | {row['memory_pressure']} | "
                f"{row.get('graph_vs_naive', '-')} | {row.get('graph_vs_independent', '-')} |"
            )
    return "\n".join(lines)
