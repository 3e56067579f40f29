"""Offline throughput of the engine on one workload: all requests at once, fixed output lengths."""

from __future__ import annotations

import time
from dataclasses import dataclass

import torch

from runtime.bench.op_timer import OpTimer
from runtime.bench.roofline import IterationRecord
from runtime.bench.workloads import BenchRequest
from runtime.heap import frozen_heap
from runtime.llm import LLM
from runtime.model_runner import ModelRunner
from runtime.outputs import OutputKind
from runtime.sampling_params import SamplingParams


@dataclass(frozen=True)
class ThroughputResult:
    seconds: float
    prompt_tokens: int
    output_tokens: int
    records: list[IterationRecord]
    profiled_iterations: int
    seconds_by_kind: dict[str, float]  # summed over the profiled iterations
    seconds_by_op: dict[str, float]  # summed over the profiled iterations and layers
    profiled_seconds: float  # wall time of the profiled iterations
    host: dict[str, float]  # host seconds summed over all iterations: schedule, prepare, ...
    preemptions: int = 0

    @property
    def max_batch_seqs(self) -> int:
        """The largest batch (sequences in one iteration) the run reached."""
        return max((r.num_seqs for r in self.records), default=0)

    @property
    def total_tokens_per_s(self) -> float:
        return (self.prompt_tokens + self.output_tokens) / self.seconds

    @property
    def output_tokens_per_s(self) -> float:
        return self.output_tokens / self.seconds


def _sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize()


def run_throughput(
    llm: LLM, requests: list[BenchRequest], profile_every: int = 0
) -> ThroughputResult:
    """Submit every request, step until all finish; every ``profile_every``-th iteration runs
    eagerly with per-operation events (its time is kept apart from the breakdown's denominator)."""
    engine = llm.engine
    for req in requests:
        params = SamplingParams(max_tokens=req.output_len, temperature=0.0, ignore_eos=True)
        engine.add_request(req.prompt_token_ids, params, output_kind=OutputKind.FINAL_ONLY)
    records: list[IterationRecord] = []
    by_kind: dict[str, float] = {}
    by_op: dict[str, float] = {}
    host = dict.fromkeys(("schedule", "prepare", "wait", "postprocess", "gpu"), 0.0)
    profiled, profiled_secs = 0, 0.0
    output_tokens = 0
    preempted = engine.stats.num_preemptions
    with frozen_heap():  # as a serving engine runs: no full collection of the startup heap
        _sync(engine.device)
        start = time.perf_counter()
        while engine.has_unfinished_requests():
            timer = None
            if profile_every and len(records) % profile_every == profile_every // 2:
                timer = OpTimer(engine.device)
                if not isinstance(engine.runner, ModelRunner):
                    raise ValueError("per-operation profiling runs in one process only (not TP)")
                engine.runner.profile_hook = timer
            t0 = time.perf_counter()
            outs = engine.step()
            output_tokens += sum(len(o.token_ids) for o in outs if o.finished)
            s = engine.stats
            records.append(
                IterationRecord(s.last_batch_tokens, s.last_batch_seqs, s.last_kv_tokens_read,
                                s.last_attn_pairs, time.perf_counter() - t0,
                                engine.runner.timings.gpu_s, engine.runner.timings.graph_s,
                                engine.runner.timings.graph_seqs)
            )  # fmt: skip
            host["schedule"] += s.last_schedule_seconds
            host["prepare"] += engine.runner.timings.prepare_s
            host["wait"] += engine.runner.timings.wait_s
            host["postprocess"] += s.last_postprocess_seconds
            host["gpu"] += engine.runner.timings.gpu_s
            if timer is not None:
                kinds, names = timer.seconds()
                for kind, secs in kinds.items():
                    by_kind[kind] = by_kind.get(kind, 0.0) + secs
                for name, secs in names.items():
                    by_op[name] = by_op.get(name, 0.0) + secs
                profiled += 1
                profiled_secs += records[-1].seconds
        _sync(engine.device)
        elapsed = time.perf_counter() - start
    return ThroughputResult(
        seconds=elapsed,
        prompt_tokens=sum(len(r.prompt_token_ids) for r in requests),
        output_tokens=output_tokens,
        records=records,
        profiled_iterations=profiled,
        seconds_by_kind=by_kind,
        seconds_by_op=by_op,
        profiled_seconds=profiled_secs,
        host=host,
        preemptions=engine.stats.num_preemptions - preempted,
    )
