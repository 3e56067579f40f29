"""How close engines are to the floor of a schedule without overlap across operations.

For every workload row of benchmark result files (``python -m runtime.bench ... --peer ...``),
the workload roofline (``runtime.bench.roofline.workload_roofline``) is rebuilt from the row's
own nanolang record: the same requests (the generator is seeded per workload), the model, the
KV cache's capacity and dtype, and the GEMM peak and HBM bandwidth that run measured. Its
``serial_seconds`` is the floor of any engine that does not run attention's KV traffic beside
its GEMMs: per iteration the longer of its FLOPs at the measured GEMM peak and one read of the
weights, then its KV bytes, all at the measured bandwidth; summed, at least max(every FLOP,
the least number of iterations' weight reads) plus every KV byte (no other operation, no host
time). A throughput target above that floor can only be reached by overlapping attention with
the GEMMs (the NanoFlow pipeline) or by moving fewer KV bytes (an fp8 KV cache).

``--gemm-tflops R`` prices the FLOPs at R instead of the run's measured peak (a best-of-20 burst
of one GEMM: sustained prefill GEMMs run slower as the clock drops under load, e.g. 733 TFLOP/s
on average in the engine's profiled mixed iterations of 2026-11-30, docs/performance.md).

Beside it, where the KV cache holds every request at once, the floor of one simple schedule
(``all_at_once_seconds``: every prompt first, then every decode step over the sequences not
done, each step the longer of its FLOPs and one read of the weights, plus its KV bytes) and the
share of it nanolang's run reached: not a bound on every schedule, but what a run's tail of
steps over a few sequences costs at the weights' bandwidth.

``--by-batch`` prices each decode step of that schedule alone and groups them by batch size,
beside each sequential nanolang record's own decode steps by batch size: where a run's steps are
furthest from their floor (the record's peers are not needed).

    python bench/serial_floor.py bench/results/FILE.json [...] [--gemm-tflops R] [--json OUT]
    python bench/serial_floor.py bench/results/FILE.json [...] --by-batch
"""

from __future__ import annotations

import argparse
import json
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runtime.bench.report import decode_steps_by_batch
from runtime.bench.roofline import (
    Ceilings,
    IterationRecord,
    Network,
    WorkloadRoofline,
    rooflines,
    workload_roofline,
)
from runtime.bench.workloads import WORKLOADS, make_requests, workload_seed
from runtime.config import ModelConfig
from runtime.model.loader import resolve_model

TARGET = 1.1  # issue 18: at least 1.1x the better peer


@dataclass(frozen=True)
class Run:
    """What a nanolang record says of its run: the model, every request's (prompt, output)
    lengths (the generator's, seeded per workload), the ceilings, the KV element size, the TP
    degree and the KV capacity."""

    cfg: ModelConfig
    lengths: list[tuple[int, int]]
    ceilings: Ceilings
    kv_elem: int
    tp: int
    kv_tokens: int


def run_of(record: dict[str, Any], gemm_tflops: float | None = None) -> Run:
    """The run a nanolang record describes (``gemm_tflops``: this GEMM rate instead of the
    record's measured peak); refused when the generator's requests are not the record's."""
    _, cfg = resolve_model(record["model"])
    requests = make_requests(WORKLOADS[record["workload"]], record["num_requests"],
                             cfg.vocab_size, seed=workload_seed(record["workload"]))  # fmt: skip
    lengths = [(len(r.prompt_token_ids), r.output_len) for r in requests]
    prompts = sum(p for p, _ in lengths)
    if prompts != record["prompt_tokens"]:
        raise ValueError(f"{record['workload']} x {record['num_requests']}: the generator gives "
                         f"{prompts} prompt tokens, the record {record['prompt_tokens']} "
                         "(a shrunken or other run)")  # fmt: skip
    gemm = gemm_tflops if gemm_tflops is not None else record["gemm_peak_tflops"]
    return Run(cfg, lengths, Ceilings(gemm * 1e12, record["hbm_tb_per_s"] * 1e12),
               1 if record.get("kv_cache_dtype") == "fp8" else 2,
               record.get("tensor_parallel_size", 1), record["kv_cache_tokens"])  # fmt: skip


def floor_of(run: Run) -> WorkloadRoofline:
    """The workload roofline of the run (its ``serial_seconds``: the floor of every schedule
    without overlap across operations)."""
    return workload_roofline(run.lengths, run.cfg, run.ceilings, run.kv_elem, 2, run.kv_tokens,
                             run.tp)  # fmt: skip


def _all_at_once_steps(run: Run) -> list[IterationRecord]:
    """The all-at-once schedule: every prompt in one iteration, then each decode step over the
    sequences whose output is not done."""
    lengths = run.lengths
    prompts = sum(p for p, _ in lengths)
    steps = [IterationRecord(prompts, len(lengths), prompts,
                             sum(p * (p + 1) // 2 for p, _ in lengths), 0.0)]  # fmt: skip
    for step in range(1, max(o for _, o in lengths)):
        alive = [p + step for p, o in lengths if o > step]  # each decode's context
        steps.append(IterationRecord(len(alive), len(alive), sum(alive), sum(alive), 0.0))
    return steps


def _serial_seconds(run: Run, steps: list[IterationRecord]) -> float:
    """The iterations priced as the records' serial roofline prices an engine's own."""
    tokens = sum(r.num_tokens for r in steps)
    roof = rooflines(steps, run.cfg, run.ceilings, run.kv_elem, tokens, weight_elem=2,
                     network=Network(tp=run.tp))  # fmt: skip
    return tokens / roof.serial_tokens_per_s


def all_at_once_seconds(run: Run) -> float | None:
    """The floor of one simple schedule, not of every schedule: every request's prompt in the
    first iteration, then each decode step over the sequences whose output is not done, each
    priced as the benchmark records' serial roofline prices an engine's own iterations (the
    longer of its FLOPs at the GEMM peak and one read of the weights, plus its KV reads). None
    where the KV cache cannot hold every request at once. It shows what a run's decode tail
    costs at the weights' bandwidth (its steps over a few sequences)."""
    if sum(p + o for p, o in run.lengths) > run.kv_tokens:
        return None
    return _serial_seconds(run, _all_at_once_steps(run))


def decode_floors_by_batch(record: dict[str, Any]) -> list[dict[str, Any]]:
    """Where a run's decode steps lose, per batch-size range (``runtime.bench.report``'s): the
    all-at-once schedule's decode steps of that size, each priced alone as above (its mean: the
    floor of such a step), against the record's own ``decode_steps_by_batch``; ``lost_s`` is
    the record's steps times (their mean - the floor). Empty where the KV cache cannot hold
    every request at once or the record has no decode steps by batch size."""
    run = run_of(record)
    measured = record.get("decode_steps_by_batch") or {}
    if not measured or sum(p + o for p, o in run.lengths) > run.kv_tokens:
        return []
    priced = [(r.num_seqs, _serial_seconds(run, [r])) for r in _all_at_once_steps(run)[1:]]
    floors = decode_steps_by_batch(priced)
    out = []
    for name, m in measured.items():
        f = floors.get(name)
        out.append({
            "workload": record["workload"], "num_requests": record["num_requests"],
            "batch": name, "steps": m["steps"], "mean_ms": m["mean_ms"],
            "floor_steps": f["steps"] if f else 0, "floor_ms": f["mean_ms"] if f else None,
            "lost_s": round(m["steps"] * (m["mean_ms"] - f["mean_ms"]) / 1e3, 3) if f else None,
        })  # fmt: skip
    return out


def by_batch_table(found: list[dict[str, Any]]) -> str:
    head = ["workload (requests)", "sequences", "steps", "mean ms", "floor ms (floor steps)",
            "seconds lost"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in found:
        floor = "-" if r["floor_ms"] is None else f"{r['floor_ms']:.2f} ({r['floor_steps']})"
        lost = "-" if r["lost_s"] is None else f"{r['lost_s']:.2f}"
        lines.append(f"| {r['workload']} ({r['num_requests']}) | {r['batch']} | {r['steps']} | "
                     f"{r['mean_ms']:.2f} | {floor} | {lost} |")  # fmt: skip
    return "\n".join(lines)


def rows(records: list[dict[str, Any]], gemm_tflops: float | None = None) -> list[dict[str, Any]]:
    """One row per (workload, requests) with a sequential nanolang record and a peer."""
    by_row: dict[tuple[str, int], list[dict[str, Any]]] = {}
    for r in records:
        by_row.setdefault((r["workload"], r["num_requests"]), []).append(r)
    out = []
    for (workload, n), rs in by_row.items():
        ours = [r for r in rs if r["engine"] == "nanolang" and r.get("mode") == "sequential"
                and r.get("tensor_parallel_size", 1) == 1]  # fmt: skip
        peers = [r for r in rs if not r["engine"].startswith("nanolang")]
        if not ours or not peers:
            continue
        best_ours = max(ours, key=lambda r: r["total_tokens_per_s"])
        best_peer = max(peers, key=lambda r: r["total_tokens_per_s"])
        run = run_of(best_ours, gemm_tflops)
        roof = floor_of(run)
        tokens = best_ours["prompt_tokens"] + best_ours["output_tokens"]
        floor = tokens / roof.serial_seconds
        at_once = all_at_once_seconds(run)
        ours_s = tokens / best_ours["total_tokens_per_s"]
        out.append({
            "workload": workload, "num_requests": n,
            "gemm_tflops": gemm_tflops or best_ours["gemm_peak_tflops"],
            "nanolang": best_ours["total_tokens_per_s"],
            "best_peer": best_peer["engine"], "peer": best_peer["total_tokens_per_s"],
            "serial_floor_tokens_per_s": round(floor, 1),
            "serial_s": round(roof.serial_seconds, 3), "compute_s": round(roof.compute_seconds, 3),
            "weights_s": round(roof.weights_seconds, 3), "kv_s": round(roof.kv_seconds, 3),
            "pct_floor_nanolang": round(100 * best_ours["total_tokens_per_s"] / floor, 1),
            "pct_floor_peer": round(100 * best_peer["total_tokens_per_s"] / floor, 1),
            "pct_floor_target": round(100 * TARGET * best_peer["total_tokens_per_s"] / floor, 1),
            "all_at_once_s": None if at_once is None else round(at_once, 3),
            "pct_all_at_once_nanolang": None if at_once is None else round(
                100 * at_once / ours_s, 1),
        })  # fmt: skip
    return out


def table(found: list[dict[str, Any]]) -> str:
    head = ["workload (requests)", "nanolang", "best peer",
            "serial floor (max(compute, weights) + KV s)",
            "nanolang % floor", "peer % floor", f"{TARGET}x peer % floor",
            "all at once s (nanolang %)"]  # fmt: skip
    lines = ["| " + " | ".join(head) + " |", "|" + " --- |" * len(head)]
    for r in found:
        lines.append("| " + " | ".join([
            f"{r['workload']} ({r['num_requests']})", f"{r['nanolang']:,.0f}",
            f"{r['peer']:,.0f} ({r['best_peer']})",
            f"{r['serial_floor_tokens_per_s']:,.0f} (max({r['compute_s']:.2f}, "
            f"{r['weights_s']:.2f}) + {r['kv_s']:.2f})",
            f"{r['pct_floor_nanolang']}", f"{r['pct_floor_peer']}", f"{r['pct_floor_target']}",
            "-" if r["all_at_once_s"] is None
            else f"{r['all_at_once_s']:.2f} ({r['pct_all_at_once_nanolang']})",
        ]) + " |")  # fmt: skip
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("files", nargs="+", type=Path)
    ap.add_argument(
        "--gemm-tflops",
        type=float,
        default=None,
        help="price the FLOPs at this rate (default: each run's measured peak)",
    )
    ap.add_argument("--json", type=Path, default=None, help="write the rows here too")
    ap.add_argument(
        "--by-batch",
        action="store_true",
        help="per sequential nanolang record: its decode steps by batch size against the "
        "all-at-once schedule's floor of such steps (no peer needed)",
    )
    args = ap.parse_args(argv)
    if args.gemm_tflops is not None and not args.gemm_tflops > 0:
        print(f"error: --gemm-tflops must be positive, got {args.gemm_tflops}", file=sys.stderr)
        return 2
    found = []
    for f in args.files:
        try:
            records = json.loads(f.read_text())
            if not isinstance(records, list):
                raise ValueError("not a list of benchmark records")
            if args.by_batch:
                found += [row for r in records if r.get("engine") == "nanolang"
                          and r.get("mode") == "sequential"
                          for row in decode_floors_by_batch(r)]  # fmt: skip
            else:
                found += rows(records, args.gemm_tflops)
        except (OSError, ValueError) as exc:  # missing, not JSON, another run's requests
            print(f"error: {f}: {exc}", file=sys.stderr)
            return 2
        except KeyError as exc:  # a record without a field the floor needs
            print(f"error: {f}: a record has no {exc} (the floor needs a benchmark record's "
                  "workload, lengths, ceilings and KV capacity)", file=sys.stderr)  # fmt: skip
            return 2
        except TypeError as exc:  # records of another shape
            print(f"error: {f}: not benchmark records ({exc})", file=sys.stderr)
            return 2
    if not found:
        print("no sequential nanolang record with decode steps by batch size" if args.by_batch
              else "no row with both a sequential nanolang record and a peer",
              file=sys.stderr)  # fmt: skip
        return 1
    print(by_batch_table(found) if args.by_batch else table(found))
    if args.json is not None:
        args.json.write_text(json.dumps(found, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
