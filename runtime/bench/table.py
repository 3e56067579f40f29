"""``python -m runtime.bench.table FILE.json ...``: benchmark records as Markdown tables.

docs/performance.md pastes this output, so every figure there comes from a results file.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

DEFAULT_BUDGET = 8192  # EngineConfig.max_num_batched_tokens; other budgets are named


def _row(cells: list[Any]) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def _split(r: dict[str, Any]) -> str:
    """Iteration time and its GEMM / attention / other split: from the profiled run (device
    kernel times) when there is one, else from eager per-operation events, else the time alone."""
    prof = r.get("profile")
    if prof and "error" not in prof:
        d = prof["device_ms_per_iteration"]
        return (f'{prof["wall_ms_per_iteration"]:.1f} ({d["gemm"]:.1f} / {d["attention"]:.1f} / '
                f'{d["other"]:.1f} / idle {prof["idle_ms_per_iteration"]:.1f})')  # fmt: skip
    split = r.get("mean_iteration_split_ms")
    if split:
        return (f'{r["mean_iteration_ms"]:.1f} ({split["gemm"]:.1f} / {split["attention"]:.1f} / '
                f'{split["other"]:.1f})')  # fmt: skip
    return f"{r['mean_iteration_ms']:.1f}"


def throughput_table(records: list[dict[str, Any]]) -> str:
    head = ["workload", "mode", "async sched.", "total tok/s", "output tok/s",
            "iteration ms (GEMM / attention / other [/ idle])", "% compute roofline",
            "% memory roofline", "% tight roofline", "CPU on critical path %",
            "HF peer total tok/s (requests)"]  # fmt: skip
    lines = [_row(head), _row(["---"] * len(head))]
    for r in records:
        if r.get("engine", "nanolang") != "nanolang":
            continue
        peer = r.get("peer")
        lines.append(_row([
            r["workload"], r["mode"] + _kv(r) + _budget(r),
            "yes" if r.get("async_scheduling") else "no",
            f'{r["total_tokens_per_s"]:,.0f}', f'{r["output_tokens_per_s"]:,.0f}', _split(r),
            r["pct_compute_roofline"], r.get("pct_memory_roofline", "-"), r["pct_tight_roofline"],
            r.get("cpu_critical_path_pct", "-"),
            f'{peer["total_tokens_per_s"]:,.0f} ({peer["num_requests"]})' if peer else "-",
        ]))  # fmt: skip
    return "\n".join(lines)


def _kv(r: dict[str, Any]) -> str:
    kv = r.get("kv_cache_dtype", "auto")
    tp = r.get("tensor_parallel_size", 1)
    return ("" if kv == "auto" else f", {kv} KV") + ("" if tp == 1 else f", TP={tp}") + _ar(r)


def _ar(r: dict[str, Any]) -> str:
    """The group's own all-reduce when it is not NCCL alone (tensor parallelism)."""
    return ", symm_mem all-reduce" if str(r.get("allreduce", "")).startswith("symm_mem") else ""


def _budget(r: dict[str, Any]) -> str:
    budget = r.get("max_num_batched_tokens")
    return "" if budget is None else f", {budget} tok/iter"


def _engine(r: dict[str, Any]) -> str:
    name = r.get("engine", "nanolang")
    if r.get("mode", "sequential") != "sequential":
        name += f" ({r['mode']})"
    if r.get("kv_cache_dtype", "auto") != "auto":
        name += f" {r['kv_cache_dtype']} KV"
    if r.get("tensor_parallel_size", 1) > 1:
        name += f" TP={r['tensor_parallel_size']}" + _ar(r)
    budget = r.get("max_num_batched_tokens")
    if name.startswith("nanolang") and budget not in (None, DEFAULT_BUDGET):
        name += f" ({budget} tok/iter)"
    if name.startswith("nanolang") and r.get("attention_backend"):  # asked for by name
        name += f" ({r['attention_backend']} attention)"
    return str(name)


def comparison_table(records: list[dict[str, Any]]) -> str:
    """Total tokens/s per (workload, requests) and engine; each engine's largest batch (peers: as
    their own statistics or logs report it, ``-`` where unknown); nanolang's share of the workload
    roofline; nanolang / best peer, where nanolang is its plain engine or, without one (other
    modes, TP > 1), its fastest on that row."""
    engines = list(dict.fromkeys(_engine(r) for r in records))
    if len(engines) < 2:
        return ""
    rows: dict[tuple[str, int], dict[str, dict[str, Any]]] = {}
    for r in records:
        rows.setdefault((r["workload"], r["num_requests"]), {})[_engine(r)] = r
    head = ["workload (requests)", *engines, "largest batch (same order)",
            "nanolang % workload roofline", "nanolang / best peer"]  # fmt: skip
    lines = [_row(head), _row(["---"] * len(head))]
    for (workload, n), by_engine in rows.items():
        ours = by_engine.get("nanolang") or max(
            (r for e, r in by_engine.items() if e.startswith("nanolang")),
            key=lambda r: r["total_tokens_per_s"], default=None,
        )
        peers = [r["total_tokens_per_s"] for e, r in by_engine.items() if
                 not e.startswith("nanolang")]  # fmt: skip
        ratio = f"{ours['total_tokens_per_s'] / max(peers):.2f}x" if ours and peers else "-"
        lines.append(_row([
            f"{workload} ({n})",
            *(f'{by_engine[e]["total_tokens_per_s"]:,.0f}' if e in by_engine else "-"
              for e in engines),
            " / ".join(str(by_engine[e].get("max_batch_seqs", "-")) if e in by_engine else "-"
                       for e in engines),
            ours.get("pct_workload_roofline", "-") if ours else "-",
            ratio,
        ]))  # fmt: skip
    return "\n".join(lines)


def sm_budget_table(doc: dict[str, Any]) -> str:
    """The decode-attention-on-an-SM-budget results (bench/decode_attention_sms.py)."""
    head = ["SMs", "how confined", "GB/s over the KV cache", "streaming-read ceiling GB/s", "%"]
    lines = [_row(head), _row(["---"] * len(head))]
    for r in doc["results"]:
        lines.append(_row([
            r["granted_sms"], r["mode"].replace("_", " "), f'{r["gbps"]:,.0f}',
            f'{r["ceiling_gbps"]:,.0f}', r["percent"],
        ]))  # fmt: skip
    shape = doc["shape"]
    lines.append("")
    lines.append(
        f"{doc['device']}, {doc['date'][:10]}, {doc['dtype']}, batch {shape['batch']} x context "
        f"{shape['context']}, {shape['q_heads']}/{shape['kv_heads']} heads, dim "
        f"{shape['head_dim']}, page {shape['page']}: `{doc['command']}`"
    )
    return "\n".join(lines)


def provenance(records: list[dict[str, Any]]) -> str:
    seen = []
    for r in records:
        line = f"- {r['device']}, {r['date']}: `{r['command']}`"
        if line not in seen:
            seen.append(line)
    return "\n".join(seen)


def main(argv: list[str] | None = None) -> int:
    args = sys.argv[1:] if argv is None else argv
    usage = "usage: python -m runtime.bench.table RESULTS.json ..."
    if any(a in ("-h", "--help") for a in args):
        print(usage + "\n\nMarkdown tables of runtime.bench result files.")
        return 0
    paths = [Path(p) for p in args]
    missing = [str(p) for p in paths if not p.is_file()]
    if not paths or missing:
        print(usage if not paths else f"no such file: {', '.join(missing)}", file=sys.stderr)
        return 2
    docs = [json.loads(p.read_text()) for p in paths]
    for doc in docs:
        if isinstance(doc, dict) and "results" in doc:
            print(sm_budget_table(doc))
            print()
    records = [r for doc in docs if isinstance(doc, list) for r in doc]
    if not records:
        return 0
    print(throughput_table(records))
    print()
    comparison = comparison_table(records)
    if comparison:
        print(comparison)
        print()
    print(provenance(records))
    return 0


if __name__ == "__main__":
    sys.exit(main())
