"""Ceilings measured in the same run, and the roofline throughputs of a recorded run.

Compute roofline (NanoFlow's definition): peak dense GEMM FLOP/s / (2 x parameters) tokens per
second, counting prompt and output tokens. Memory roofline: every iteration must read the weights
once plus the KV cache of every sequence in the batch; the run's iterations at the measured HBM
bandwidth give a lower bound on its time. The tight roofline takes, per iteration, the larger of
its compute time (``forward_flops``: the layers' GEMMs over every token, the LM head over the
sampled rows only, attention's FLOPs, all at the GEMM peak) and its memory time. (Before
2026-11-30's seventh session the compute time counted 2 x all parameters per token, the
embedding table and the LM head over every prompt row included: about 13% too many FLOPs on
prompt tokens for Llama-3-8B, which made the compute side of both bounds too slow and their
percentages too high.)

With tensor parallelism over N GPUs each GPU does 1/N of the FLOPs and reads 1/N of the weights
and KV cache, so compute and memory times divide by N; each iteration then also spends network
time in its collectives (two all-reduces of the hidden states per layer, one for the embedding,
and the all-gather of the sampled rows' logits), at the all-reduce latency and bandwidth the
workers measured at start-up. The tight roofline takes the largest of the three per iteration.
The serial roofline adds them instead (the longer of the FLOPs and one weight read, then the KV
bytes, then the collectives): what an engine that overlaps nothing across operations could reach
on the same iterations, the yardstick of the sequential mode.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from runtime.config import ModelConfig


@dataclass(frozen=True)
class IterationRecord:
    num_tokens: int  # query tokens in the flat batch (prompt chunks + decodes)
    num_seqs: int
    kv_tokens_read: int  # sum over sequences of the context each attends over
    attn_pairs: int  # sum over sequences of q_len x context_len (query-key pairs)
    seconds: float
    # the iteration read back in this step (with asynchronous scheduling the one launched in the
    # step before): the device's span of it (CUDA events: first queued work to last copy), of
    # its decode graph's replay, and its sequences when it replayed one; 0 off CUDA or eager
    gpu_seconds: float = 0.0
    graph_seconds: float = 0.0
    graph_seqs: int = 0


@dataclass(frozen=True)
class Ceilings:
    gemm_flops: float  # FLOP/s, best dense GEMM measured
    hbm_bytes_per_s: float  # streaming copy, bytes read + written per second


@dataclass(frozen=True)
class Network:
    """The tensor-parallel group: its size and its measured all-reduce cost."""

    tp: int = 1
    latency_s: float = 0.0  # one small all-reduce
    bytes_per_s: float = 0.0  # large all-reduces, beyond the latency

    def collective_seconds(self, cfg: ModelConfig, tokens: int, rows: int, elem: int) -> float:
        """An iteration's collectives over ``tokens`` rows of hidden state and ``rows`` sampled
        rows of logits in the model's dtype (gathered: about the same cost as an all-reduce
        of them)."""
        if self.tp <= 1 or self.bytes_per_s <= 0:
            return 0.0
        calls = 2 * cfg.num_layers + 2
        nbytes = (2 * cfg.num_layers + 1) * tokens * cfg.hidden_size * elem
        nbytes += rows * cfg.vocab_size * elem
        return calls * self.latency_s + nbytes / self.bytes_per_s


def _best_time(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    torch.cuda.synchronize()
    best = float("inf")
    for _ in range(repeats):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        best = min(best, start.elapsed_time(end) / 1e3)
    return best


def measure_ceilings(device: torch.device, cfg: ModelConfig, dtype: torch.dtype) -> Ceilings:
    """GEMM peak on the model's largest projection shape (4096 tokens) and HBM copy bandwidth."""
    if device.type != "cuda":
        return _measure_cpu_ceilings()
    try:
        return _measure_cuda_ceilings(device, cfg, dtype)
    finally:
        # Give the ~3.5 GB of buffers back to the device, not to this process's cache: under
        # tensor parallelism the workers sized their KV caches before this ran, in other
        # processes, and a 70B rank then ran out of memory 128 MB short (2026-11-30).
        torch.cuda.empty_cache()


def _measure_cuda_ceilings(device: torch.device, cfg: ModelConfig, dtype: torch.dtype) -> Ceilings:
    m, k, n = 4096, cfg.hidden_size, 2 * cfg.intermediate_size
    a = torch.randn(m, k, device=device, dtype=dtype)
    b = torch.randn(n, k, device=device, dtype=dtype)
    gemm = _best_time(lambda: torch.nn.functional.linear(a, b), 20)
    src = torch.empty(1 << 30, dtype=torch.uint8, device=device)
    dst = torch.empty_like(src)
    copy = _best_time(lambda: dst.copy_(src), 10)
    return Ceilings(2 * m * k * n / gemm, 2 * src.numel() / copy)


def _best_wall(fn, repeats: int) -> float:  # type: ignore[no-untyped-def]
    fn()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - start)
    return best


def _measure_cpu_ceilings() -> Ceilings:
    a = torch.randn(1024, 1024)
    gemm = _best_wall(lambda: a @ a, 5)
    src = torch.empty(1 << 28, dtype=torch.uint8)
    dst = torch.empty_like(src)
    copy = _best_wall(lambda: dst.copy_(src), 3)
    return Ceilings(2 * 1024**3 / gemm, 2 * src.numel() / copy)


def forward_flops(cfg: ModelConfig, tokens: int, sampled: int, attn_pairs: int) -> float:
    """FLOPs of a forward over ``tokens`` rows with ``sampled`` of them through the LM head and
    ``attn_pairs`` query-key pairs: 2 x the layers' GEMM weights per token (the embedding is a
    lookup, norms and activations are not GEMMs), 2 x vocab x hidden per sampled row, and
    attention's 4 x heads x head_dim per pair and layer (QK^T and PV)."""
    h = cfg.hidden_size
    layer = h * (cfg.q_size + 2 * cfg.kv_size) + cfg.q_size * h + 3 * h * cfg.intermediate_size
    attn = 4 * cfg.num_heads * cfg.head_dim * cfg.num_layers
    return (
        2.0 * cfg.num_layers * layer * tokens
        + 2.0 * cfg.vocab_size * h * sampled
        + (attn * attn_pairs)
    )


def weight_bytes(cfg: ModelConfig, elem: int) -> int:
    """Bytes of weights one iteration streams: all but an untied input embedding table, of which
    a step reads only the rows it embeds."""
    table = 0 if cfg.tie_word_embeddings else cfg.vocab_size * cfg.hidden_size
    return (cfg.num_parameters - table) * elem


@dataclass(frozen=True)
class Rooflines:
    compute_tokens_per_s: float
    memory_tokens_per_s: float
    tight_tokens_per_s: float
    network_seconds: float = 0.0  # the run's collective time at the measured all-reduce cost
    # per iteration the longer of its FLOPs and one read of the weights, then its KV bytes (and
    # under TP its collectives): the engine's own schedule run by an engine that overlaps
    # nothing across operations, the bound its sequential mode can reach
    serial_tokens_per_s: float = 0.0


def rooflines(
    records: list[IterationRecord],
    cfg: ModelConfig,
    ceilings: Ceilings,
    elem: int,
    tokens: int,
    weight_elem: int | None = None,
    network: Network | None = None,
) -> Rooflines:
    """``tokens``: prompt + output tokens of the run (the throughput's numerator); ``elem``:
    bytes per KV cache element, ``weight_elem`` per weight element (default: ``elem``);
    ``network``: the tensor-parallel group (None: one GPU)."""
    net = network or Network()
    kv_per_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * elem
    w_bytes = weight_bytes(cfg, weight_elem or elem)
    mem_time = tight_time = net_time = serial_time = 0.0
    gemm, hbm = ceilings.gemm_flops * net.tp, ceilings.hbm_bytes_per_s * net.tp
    for r in records:
        t_weights, t_kv = w_bytes / hbm, r.kv_tokens_read * kv_per_token / hbm
        t_mem = t_weights + t_kv
        # every sequence of the batch counted as sampled: a prompt chunk that does not end its
        # prompt samples nothing, so this over-counts by at most one LM-head row per such chunk
        flops = forward_flops(cfg, r.num_tokens, r.num_seqs, r.attn_pairs)
        t_compute = flops / gemm
        t_net = net.collective_seconds(cfg, r.num_tokens, r.num_seqs, weight_elem or elem)
        mem_time += t_mem
        net_time += t_net
        tight_time += max(t_mem, t_compute, t_net)
        serial_time += max(t_compute, t_weights) + t_kv + t_net
    return Rooflines(
        compute_tokens_per_s=gemm / (2 * cfg.num_parameters),
        memory_tokens_per_s=tokens / mem_time if mem_time else 0.0,
        tight_tokens_per_s=tokens / tight_time if tight_time else 0.0,
        network_seconds=net_time,
        serial_tokens_per_s=tokens / serial_time if serial_time else 0.0,
    )


@dataclass(frozen=True)
class WorkloadRoofline:
    """A bound that depends only on the workload, the model, the ceilings and the KV capacity,
    not on how an engine schedules it, so engines can be compared against one number."""

    tokens_per_s: float
    compute_seconds: float
    memory_seconds: float
    max_batch: int  # sequences the KV cache holds at their mean final length
    min_iterations: int
    kv_seconds: float = 0.0  # the KV cache's share of memory_seconds (reads and writes)
    weights_seconds: float = 0.0  # the weights' share: min_iterations reads of them

    @property
    def serial_seconds(self) -> float:
        """The floor of an engine whose attention does not run beside its GEMMs: each iteration
        runs its GEMMs, at least the longer of their FLOPs at the GEMM peak and one read of the
        weights at the HBM bandwidth, then its attention, at least its KV bytes at the
        bandwidth. Summed over the iterations, sum(max(c_i, w)) >= max(sum(c_i), n x w) for any
        n >= min_iterations, so the floor is max(compute, weights) + KV (no other operation, no
        host). Only overlapping attention's KV traffic with the GEMMs (the NanoFlow pipeline),
        or fewer bytes (an fp8 KV cache), goes below it. (Before the eighth session the floor was
        compute + KV, the weights' reads taken as hidden: far too low where a run's tail of
        decode steps over a few sequences is bound by those reads.)"""
        return max(self.compute_seconds, self.weights_seconds) + self.kv_seconds


def workload_roofline(
    lengths: list[tuple[int, int]],
    cfg: ModelConfig,
    ceilings: Ceilings,
    kv_elem: int,
    weight_elem: int,
    kv_capacity_tokens: int,
    tp: int = 1,
) -> WorkloadRoofline:
    """``lengths``: (prompt, output) tokens of every request; ``kv_elem`` / ``weight_elem``:
    bytes per element of the KV cache and of the weights.

    Compute: ``forward_flops`` (the layers' GEMMs per token, the LM head per output token,
    attention's 4 x heads x head_dim per query-key pair: causal prompt, then each decode token
    over its context), at the GEMM peak. Memory: the KV
    cache holds at most ``max_batch`` sequences at once, so generating the outputs takes at least
    max(longest output, total output / max_batch) iterations, each reading the weights once; on
    top, every decode token reads its context's KV once, and every token's KV is written once
    (and read once more by its prompt's attention). The bound is the larger of the two times;
    ``serial_seconds`` the floor without overlap across operations (its docstring).
    With ``tp`` GPUs both divide by ``tp`` (``kv_capacity_tokens`` counts tokens: every rank
    holds its KV heads of all of them); collectives are left out of this bound.
    """
    kv_per_token = 2 * cfg.num_layers * cfg.num_kv_heads * cfg.head_dim * kv_elem
    tokens = sum(p + o for p, o in lengths)
    pairs = 0
    decode_ctx = 0
    for p, o in lengths:
        decode = sum(range(p + 1, p + o))  # decode token at position q attends q + 1 keys
        pairs += p * (p + 1) // 2 + decode
        decode_ctx += decode
    # one sampled row per output token (the first from the prompt's last row)
    flops = forward_flops(cfg, tokens, sum(o for _, o in lengths), pairs)
    mean_len = tokens / max(1, len(lengths))
    max_batch = max(1, min(len(lengths), int(kv_capacity_tokens // max(1.0, mean_len))))
    total_out = sum(o for _, o in lengths)
    iters = max(max((o for _, o in lengths), default=0), -(-total_out // max_batch))
    kv_bytes = kv_per_token * (decode_ctx + 2 * tokens)
    hbm = ceilings.hbm_bytes_per_s * tp
    weights = iters * weight_bytes(cfg, weight_elem) / hbm
    mem = weights + kv_bytes / hbm
    comp = flops / (ceilings.gemm_flops * tp)
    return WorkloadRoofline(
        tokens_per_s=tokens / max(mem, comp, 1e-12),
        compute_seconds=comp,
        memory_seconds=mem,
        max_batch=max_batch,
        min_iterations=iters,
        kv_seconds=kv_bytes / hbm,
        weights_seconds=weights,
    )
