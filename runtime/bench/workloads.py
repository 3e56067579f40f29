"""Offline throughput workloads: fixed lengths and synthetic length distributions.

The distributions have the mean input / output lengths of ShareGPT (246 / 322), LMSYS-Chat
(102 / 222) and Splitwise (1155 / 211); they are synthetic (gamma-distributed lengths with those
means, shape 2, clipped to [4, 4 x mean]), not the datasets themselves.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Workload:
    name: str
    mean_input: int
    mean_output: int
    fixed: bool


WORKLOADS = {
    w.name: w
    for w in (
        Workload("512/512", 512, 512, True),
        Workload("1024/512", 1024, 512, True),
        Workload("512/1024", 512, 1024, True),
        Workload("sharegpt", 246, 322, False),
        Workload("lmsys", 102, 222, False),
        Workload("splitwise", 1155, 211, False),
        Workload("1000/1000", 1000, 1000, True),
    )
}


def workload_seed(name: str) -> int:
    """The request generator's seed of a workload: its place in WORKLOADS, plus one, whichever
    subset a run selects (so every run, and every peer, gets the same requests)."""
    return 1 + list(WORKLOADS).index(name)


@dataclass(frozen=True)
class BenchRequest:
    prompt_token_ids: list[int]
    output_len: int


def _lengths(rng: np.random.Generator, mean: int, n: int, fixed: bool) -> list[int]:
    if fixed:
        return [mean] * n
    raw = rng.gamma(shape=2.0, scale=mean / 2.0, size=n)
    return [int(x) for x in np.clip(np.round(raw), 4, 4 * mean)]


WARMUP_SEED = 1000  # plus workload_seed: a warm-up's requests, a seed no timed requests use
WARMUP_OUTPUT_TOKENS = 8


def make_requests(
    workload: Workload, num_requests: int, vocab_size: int, seed: int = 0, scale: float = 1.0
) -> list[BenchRequest]:
    """Random prompt tokens with the workload's lengths (``scale`` shrinks lengths for tests)."""
    rng = np.random.default_rng(seed)
    ins = _lengths(rng, max(1, int(workload.mean_input * scale)), num_requests, workload.fixed)
    outs = _lengths(rng, max(1, int(workload.mean_output * scale)), num_requests, workload.fixed)
    return [
        BenchRequest(rng.integers(10, vocab_size - 10, size=i).tolist(), o)
        for i, o in zip(ins, outs, strict=True)
    ]


def warmup_requests(workload: str, count: int, vocab_size: int, scale: float = 1.0) -> list[
    BenchRequest
]:  # fmt: skip
    """An engine's untimed warm-up: ``count`` requests with ``workload``'s prompt lengths (a seed
    of their own per workload: no timed request and no other workload's warm-up shares a prefix
    with them) and at most WARMUP_OUTPUT_TOKENS output tokens each; nanolang and the peers warm
    up on the same ones."""
    seed = WARMUP_SEED + workload_seed(workload)
    return [
        BenchRequest(r.prompt_token_ids, min(r.output_len, WARMUP_OUTPUT_TOKENS))
        for r in make_requests(WORKLOADS[workload], count, vocab_size, seed, scale)
    ]  # fmt: skip
