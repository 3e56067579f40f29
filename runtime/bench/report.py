"""One JSON object per (workload, mode), and a table of them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runtime.bench.hf_peer import PeerResult
from runtime.bench.roofline import Ceilings, IterationRecord, Network, Rooflines, WorkloadRoofline
from runtime.bench.throughput import ThroughputResult


def result_record(
    *,
    model: str,
    device_name: str,
    command: str,
    workload: str,
    mode: str,
    async_scheduling: bool,
    pipeline: str | None = None,
    pipeline_used: str | None = None,
    engine_index: int = 0,
    num_requests: int,
    result: ThroughputResult,
    roof: Rooflines,
    ceilings: Ceilings,
    kernels: dict[str, str],
    peer: PeerResult | None,
    workload_roof: WorkloadRoofline | None = None,
    version: str = "unknown",
    kv_cache_tokens: int | None = None,
    kv_cache_dtype: str = "auto",
    profile: dict[str, Any] | None = None,
    network: Network | None = None,
    max_num_batched_tokens: int | None = None,
) -> dict[str, Any]:
    total = result.total_tokens_per_s
    iters = len(result.records)
    mean_iter = result.seconds / iters if iters else 0.0
    prof = result.profiled_seconds or 1.0
    share = {k: v / prof for k, v in result.seconds_by_kind.items()}
    gemm, attn = share.get("gemm", 0.0), share.get("attention", 0.0)
    record: dict[str, Any] = {
        "engine": "nanolang",
        "version": version,
        "model": model,
        "device": device_name,
        "date": dt.date.today().isoformat(),
        "command": command,
        "workload": workload,
        "mode": mode,
        "tensor_parallel_size": (network or Network()).tp,
        "pipeline": pipeline,
        # what the engine ran for it (e.g. a plan set that says dense everywhere), and which of
        # the run's engine instances this was (0 first: a mode listed twice runs twice)
        "pipeline_used": pipeline_used,
        "engine_index": engine_index,
        "async_scheduling": async_scheduling,
        "num_requests": num_requests,
        "kv_cache_dtype": kv_cache_dtype,
        "kv_cache_tokens": kv_cache_tokens,
        "max_num_batched_tokens": max_num_batched_tokens,
        "max_batch_seqs": result.max_batch_seqs,
        "preemptions": result.preemptions,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.output_tokens,
        "seconds": round(result.seconds, 3),
        "total_tokens_per_s": round(total, 1),
        "output_tokens_per_s": round(result.output_tokens_per_s, 1),
        "iterations": iters,
        "mean_iteration_ms": round(mean_iter * 1e3, 3),
        **iteration_kinds(result),
        # from eager per-operation events (--profile-every); None when the run was not profiled
        "mean_iteration_split_ms": {
            "gemm": round(mean_iter * gemm * 1e3, 3),
            "attention": round(mean_iter * attn * 1e3, 3),
            "other": round(mean_iter * max(0.0, 1 - gemm - attn) * 1e3, 3),
        }
        if result.profiled_iterations
        else None,
        "profiled_iterations": result.profiled_iterations,
        "profiled_ops_ms_per_iteration": {
            name: round(secs / max(1, result.profiled_iterations) * 1e3, 3)
            for name, secs in sorted(result.seconds_by_op.items(), key=lambda kv: -kv[1])
        },
        "host_ms_per_iteration": {
            k: round(v / max(1, iters) * 1e3, 3) for k, v in result.host.items()
        },
        # share of the run in which the device waited for the host: 100 - device-busy share
        # on a GPU (busy = first queued work to last copy of each iteration, from CUDA events);
        # on the CPU the host work itself
        "cpu_critical_path_pct": round(100 * critical_path_share(result), 1),
        "gemm_peak_tflops": round(ceilings.gemm_flops / 1e12, 1),
        "hbm_tb_per_s": round(ceilings.hbm_bytes_per_s / 1e12, 3),
        "compute_roofline_tokens_per_s": round(roof.compute_tokens_per_s, 1),
        "memory_roofline_tokens_per_s": round(roof.memory_tokens_per_s, 1),
        "tight_roofline_tokens_per_s": round(roof.tight_tokens_per_s, 1),
        "serial_roofline_tokens_per_s": round(roof.serial_tokens_per_s, 1),
        "pct_compute_roofline": round(100 * total / roof.compute_tokens_per_s, 1),
        "pct_memory_roofline": round(100 * total / roof.memory_tokens_per_s, 1),
        "pct_tight_roofline": round(100 * total / roof.tight_tokens_per_s, 1),
        "pct_serial_roofline": round(100 * total / roof.serial_tokens_per_s, 1)
        if roof.serial_tokens_per_s
        else None,
        "kernels": kernels,
    }
    if network is not None and network.tp > 1:
        record["network"] = {
            "allreduce_latency_us": round(network.latency_s * 1e6, 1),
            "allreduce_gb_per_s": round(network.bytes_per_s / 1e9, 1),
            "collective_seconds_at_roofline": round(roof.network_seconds, 3),
            "pct_of_run": round(100 * roof.network_seconds / max(result.seconds, 1e-9), 1),
        }
    if workload_roof is not None:
        record["workload_roofline_tokens_per_s"] = round(workload_roof.tokens_per_s, 1)
        record["pct_workload_roofline"] = round(100 * total / workload_roof.tokens_per_s, 1)
        record["workload_roofline"] = {
            "compute_s": round(workload_roof.compute_seconds, 3),
            "memory_s": round(workload_roof.memory_seconds, 3),
            "kv_s": round(workload_roof.kv_seconds, 3),
            "weights_s": round(workload_roof.weights_seconds, 3),
            # one read of the weights at the measured bandwidth: a decode step's floor
            "weights_read_ms": round(
                1e3 * workload_roof.weights_seconds / max(1, workload_roof.min_iterations), 3
            ),
            "serial_s": round(workload_roof.serial_seconds, 3),
            "max_batch": workload_roof.max_batch,
            "min_iterations": workload_roof.min_iterations,
        }
    if profile is not None:
        record["profile"] = profile
    if peer is not None:
        record["peer"] = {
            "name": peer.name,
            "num_requests": peer.num_requests,
            "seconds": round(peer.seconds, 3),
            "total_tokens_per_s": round(peer.total_tokens_per_s, 1),
            "output_tokens_per_s": round(peer.output_tokens_per_s, 1),
        }
    return record


# decode-step batch sizes by range: a run's tail of steps over a few sequences is bound by the
# weights' reads (the workload roofline's weights_read_ms), its full steps by the GEMMs and KV
DECODE_BATCH_RANGES = ((1, 16), (17, 32), (33, 64), (65, 128), (129, 256), (257, 512),
                       (513, 1024), (1025, None))  # fmt: skip


def iteration_kinds(result: ThroughputResult) -> dict[str, Any]:
    """Mixed iterations (some prefill chunk of more than one token) apart from decode-only ones:
    how many of each and their mean step time (wall clock of ``engine.step``); and the decode
    steps by batch size (``decode_steps_by_batch``: steps, mean ms and seconds per range)."""
    mixed = [r.seconds for r in result.records if r.num_tokens > r.num_seqs]
    decode = [r for r in result.records if r.num_tokens <= r.num_seqs]
    return {
        "mixed_iterations": len(mixed),
        "iteration_ms_by_kind": {
            "mixed": round(1e3 * sum(mixed) / len(mixed), 3) if mixed else None,
            "decode": round(1e3 * sum(r.seconds for r in decode) / len(decode), 3)
            if decode
            else None,
        },
        "decode_steps_by_batch": decode_steps_by_batch([(r.num_seqs, r.seconds) for r in decode]),
        "decode_device_by_batch": decode_device_by_batch(result.records),
    }


def decode_steps_by_batch(steps: list[tuple[int, float]]) -> dict[str, dict[str, float]]:
    """(sequences, seconds) of decode steps -> per batch-size range met ("1-16", ..., "1025+"):
    the number of steps, their mean milliseconds and their seconds in all."""
    out: dict[str, dict[str, float]] = {}
    for lo, hi in DECODE_BATCH_RANGES:
        secs = [t for n, t in steps if n >= lo and (hi is None or n <= hi)]
        if secs:
            out[f"{lo}-{hi}" if hi else f"{lo}+"] = {
                "steps": len(secs),
                "mean_ms": round(1e3 * sum(secs) / len(secs), 3),
                "seconds": round(sum(secs), 3),
            }
    return out


def decode_device_by_batch(records: list[IterationRecord]) -> dict[str, dict[str, float]]:
    """Of the decode iterations that replayed a CUDA graph, per range of their batch size: the
    mean wall time of the steps that read them back (``step_ms``; under asynchronous
    scheduling such a step waits for that iteration), the device's span of the iteration
    (``device_ms``: first queued work to last copy, CUDA events) and of the graph's launch in
    it (``graph_ms``), and the rest of the span (``outside_graph_ms``: the copies, the
    attention backend's replay inputs, the patch, sampling, the read-back, and any wait of the
    device for the host inside the iteration, which the CPU-on-the-critical-path share,
    counted between iterations, does not see). Empty off CUDA."""
    out: dict[str, dict[str, float]] = {}
    replayed = [r for r in records if r.graph_seconds > 0 and r.graph_seqs > 0]
    for lo, hi in DECODE_BATCH_RANGES:
        rs = [r for r in replayed if r.graph_seqs >= lo and (hi is None or r.graph_seqs <= hi)]
        if rs:
            device = 1e3 * sum(r.gpu_seconds for r in rs) / len(rs)
            graph = 1e3 * sum(r.graph_seconds for r in rs) / len(rs)
            out[f"{lo}-{hi}" if hi else f"{lo}+"] = {
                "steps": len(rs),
                "step_ms": round(1e3 * sum(r.seconds for r in rs) / len(rs), 3),
                "device_ms": round(device, 3),
                "graph_ms": round(graph, 3),
                "outside_graph_ms": round(device - graph, 3),
            }
    return out


def critical_path_share(result: ThroughputResult) -> float:
    if result.host["gpu"] > 0:
        return max(0.0, 1 - result.host["gpu"] / result.seconds)
    host = result.host["schedule"] + result.host["prepare"] + result.host["postprocess"]
    return host / max(result.seconds, 1e-9)


def render_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="offline throughput")
    for col in ("engine", "workload", "requests", "kv", "total tok/s", "output tok/s",
                "max batch", "% tight", "% workload roofline", "hf peer tok/s"):  # fmt: skip
        table.add_column(col)
    for r in records:
        peer = r.get("peer", {}).get("total_tokens_per_s", "-")
        engine = r["engine"] + ("" if r.get("mode", "sequential") == "sequential"
                                else f' ({r["mode"]})')  # fmt: skip
        if r.get("tensor_parallel_size", 1) > 1:
            engine += f" TP={r['tensor_parallel_size']}"

        table.add_row(
            engine, r["workload"], str(r["num_requests"]), r.get("kv_cache_dtype", "auto"),
            f'{r["total_tokens_per_s"]:.0f}', f'{r["output_tokens_per_s"]:.0f}',
            str(r.get("max_batch_seqs", "-")), _pct(r, "pct_tight_roofline"),
            _pct(r, "pct_workload_roofline"), str(peer),
        )  # fmt: skip
    return table


def _pct(record: dict[str, Any], key: str) -> str:
    value = record.get(key)
    return "-" if value is None else f"{value:.1f}"
