"""What the batches of a run would cost on the GPU: a deterministic stand-in for wall clock.

On a shared CPU the wall clock of a run says more about the machine's load than about the
schedule. ``BatchTotals`` sums, over the engine iterations of a run, the batch sizes the
scheduler formed, and prices each iteration with ``IterationCost``, a roofline of one
Llama-3-8B iteration on an H200 (bf16 weights read once per iteration, or the batch's matrix
FLOPs when larger; the KV cache the batch attends over read once; a fixed host cost). It depends
only on the schedule, so it compares modes; it is a model of the GPU, not a measurement.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class IterationCost:
    weight_bytes: float = 16.06e9  # Llama-3-8B, bf16
    flops_per_token: float = 2 * 8.03e9
    kv_bytes_per_token: float = 2 * 32 * 8 * 128 * 2  # K and V, 32 layers, 8 heads of 128, bf16
    hbm_bytes_per_s: float = 4.2e12  # measured on the H200 (docs/performance.md)
    flops_per_s: float = 7.8e14  # measured bf16 GEMM peak on the H200
    host_s: float = 0.002  # per iteration: scheduling, launch, read-back

    def seconds(self, tokens: int, kv_tokens_read: int) -> float:
        weights = self.weight_bytes / self.hbm_bytes_per_s
        gemm = tokens * self.flops_per_token / self.flops_per_s
        attention = kv_tokens_read * self.kv_bytes_per_token / self.hbm_bytes_per_s
        return max(weights, gemm) + attention + self.host_s


@dataclass
class BatchTotals:
    """Sums over the iterations of one run."""

    cost: IterationCost = IterationCost()
    iterations: int = 0
    tokens: int = 0  # batched tokens (prefill chunks and decodes)
    rows: int = 0  # sequences scheduled, summed over iterations
    kv_tokens_read: int = 0
    modeled_seconds: float = 0.0
    schedule_seconds: float = 0.0  # host time forming the batches (measured, not modeled)

    def add(self, tokens: int, rows: int, kv_tokens_read: int) -> None:
        self.iterations += 1
        self.tokens += tokens
        self.rows += rows
        self.kv_tokens_read += kv_tokens_read
        self.modeled_seconds += self.cost.seconds(tokens, kv_tokens_read)

    def as_record(self) -> dict[str, float]:
        n = max(1, self.iterations)
        return {
            "batched_tokens": self.tokens,
            "mean_tokens_per_iteration": round(self.tokens / n, 2),
            "mean_rows_per_iteration": round(self.rows / n, 2),
            "kv_tokens_read": self.kv_tokens_read,
            "modeled_h200_8b_seconds": round(self.modeled_seconds, 4),
            "schedule_seconds": round(self.schedule_seconds, 4),
        }
