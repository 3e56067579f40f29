"""One JSON object per (workload, mode), and a table of them."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runtime.bench.hf_peer import PeerResult
from runtime.bench.roofline import Ceilings, Rooflines
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
    num_requests: int,
    result: ThroughputResult,
    roof: Rooflines,
    ceilings: Ceilings,
    kernels: dict[str, str],
    peer: PeerResult | None,
) -> dict[str, Any]:
    total = result.total_tokens_per_s
    iters = len(result.records)
    mean_iter = result.seconds / iters if iters else 0.0
    prof = result.profiled_seconds or 1.0
    share = {k: v / prof for k, v in result.seconds_by_kind.items()}
    gemm, attn = share.get("gemm", 0.0), share.get("attention", 0.0)
    record: dict[str, Any] = {
        "model": model,
        "device": device_name,
        "date": dt.date.today().isoformat(),
        "command": command,
        "workload": workload,
        "mode": mode,
        "pipeline": pipeline,
        "async_scheduling": async_scheduling,
        "num_requests": num_requests,
        "prompt_tokens": result.prompt_tokens,
        "output_tokens": result.output_tokens,
        "seconds": round(result.seconds, 3),
        "total_tokens_per_s": round(total, 1),
        "output_tokens_per_s": round(result.output_tokens_per_s, 1),
        "iterations": iters,
        "mean_iteration_ms": round(mean_iter * 1e3, 3),
        "mean_iteration_split_ms": {
            "gemm": round(mean_iter * gemm * 1e3, 3),
            "attention": round(mean_iter * attn * 1e3, 3),
            "other": round(mean_iter * max(0.0, 1 - gemm - attn) * 1e3, 3),
        },
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
        "pct_compute_roofline": round(100 * total / roof.compute_tokens_per_s, 1),
        "pct_memory_roofline": round(100 * total / roof.memory_tokens_per_s, 1),
        "pct_tight_roofline": round(100 * total / roof.tight_tokens_per_s, 1),
        "kernels": kernels,
    }
    if peer is not None:
        record["peer"] = {
            "name": peer.name,
            "num_requests": peer.num_requests,
            "seconds": round(peer.seconds, 3),
            "total_tokens_per_s": round(peer.total_tokens_per_s, 1),
            "output_tokens_per_s": round(peer.output_tokens_per_s, 1),
        }
    return record


def critical_path_share(result: ThroughputResult) -> float:
    if result.host["gpu"] > 0:
        return max(0.0, 1 - result.host["gpu"] / result.seconds)
    host = result.host["schedule"] + result.host["prepare"] + result.host["postprocess"]
    return host / max(result.seconds, 1e-9)


def render_table(records: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title="offline throughput")
    for col in ("workload", "mode", "total tok/s", "output tok/s", "iter ms (gemm/attn/other)",
                "% compute", "% tight", "peer total tok/s"):  # fmt: skip
        table.add_column(col)
    for r in records:
        split = r["mean_iteration_split_ms"]
        peer = r.get("peer", {}).get("total_tokens_per_s", "-")
        table.add_row(
            r["workload"], r["mode"], f'{r["total_tokens_per_s"]:.0f}',
            f'{r["output_tokens_per_s"]:.0f}',
            f'{r["mean_iteration_ms"]:.1f} ({split["gemm"]:.1f}/{split["attention"]:.1f}/'
            f'{split["other"]:.1f})',
            f'{r["pct_compute_roofline"]:.1f}', f'{r["pct_tight_roofline"]:.1f}', str(peer),
        )  # fmt: skip
    return table
