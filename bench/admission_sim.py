"""Admission compared on the CPU: the real scheduler over a benchmark workload.

Drives ``runtime.scheduler.Scheduler`` (with the engine's block manager, prefix caching on) the
way the engine does, without a model: every scheduled chunk is computed, every sequence that
samples gets a token, and a request stops at its output length (``ignore_eos``). Per
``admission_reserve_tokens`` it reports iterations, the decode batch (largest, mean), the
preemptions, and a modelled time: a *model*, not a measurement, of Llama-3-8B on one H200 with
this repository's figures (docs/performance.md): per iteration, the KV read at 4.0 TB/s plus the
larger of 6.1 ms (weights, GEMMs below bandwidth at small batches) and the GEMM FLOPs at 620
TFLOP/s, plus 0.5 ms. The KV capacity is given in blocks of 16 tokens (``--num-blocks``; 54,100
is what the bf16 engine held on 2026-11-30, 563 sequences of 1,536 tokens; fp8 about 108,300).

    python bench/admission_sim.py --workloads 512/1024:1000,sharegpt:1000 --reserves 0,1024,2048

Results of 2026-11-30 are in bench/results/2026-11-30-cpu-admission-sim-*.json (the first also
compares a peak-demand admission policy that was built, simulated, and removed for lack of gain:
docs/performance.md).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, replace

from runtime.bench.workloads import WORKLOADS, make_requests, workload_seed
from runtime.block_manager import BlockManager
from runtime.config import EngineConfig
from runtime.sampling_params import SamplingParams
from runtime.scheduler import Scheduler
from runtime.sequence import FinishReason, Sequence

VOCAB = 128_256
PARAMS = 6.98e9  # Llama-3-8B's multiply-adds per token (without the LM head's vocabulary rows)


@dataclass(frozen=True)
class Model:
    """The per-iteration time model (seconds); see the module docstring."""

    kv_bytes_per_token: int = 131_072  # bf16: 32 layers x 8 KV heads x 128 x 2 (K, V) x 2 bytes
    kv_bandwidth: float = 4.0e12
    weights_s: float = 6.1e-3
    gemm_flops: float = 620e12
    other_s: float = 0.5e-3
    params: float = PARAMS

    def iteration(self, tokens: int, kv_tokens: int) -> float:
        gemm = max(self.weights_s, 2 * self.params * tokens / self.gemm_flops)
        return kv_tokens * self.kv_bytes_per_token / self.kv_bandwidth + gemm + self.other_s


# one rank of Llama-3-70B at TP=2 (two H200s), from the records of 2026-11-30: 68.5 GB of
# weights per rank at the 3.5 TB/s its decode GEMMs reach, half of 69.5e9 multiply-adds per token,
# 80 layers x 4 KV heads x 128 x 2 x 2 bytes of KV per token, 161 all-reduces of ~14 us
MODELS = {
    "llama-3-8b": Model(),
    "llama-3-70b-tp2": Model(kv_bytes_per_token=163_840, weights_s=19.5e-3, gemm_flops=700e12,
                             other_s=2.8e-3, params=34.75e9),
}


def simulate(workload: str, count: int, num_blocks: int, model: Model, reserve: int = 2048,
             tail: float = 0.0, max_num_seqs: int = 1024) -> dict:  # fmt: skip
    cfg = EngineConfig(admission_reserve_tokens=reserve, admission_tail_overcommit=tail,
                       max_num_seqs=max_num_seqs)  # fmt: skip
    sched = Scheduler(cfg, BlockManager(num_blocks, cfg.block_size, cfg.enable_prefix_caching))
    reqs = make_requests(WORKLOADS[workload], count, VOCAB, workload_seed(workload))
    for i, r in enumerate(reqs):
        params = SamplingParams(max_tokens=r.output_len, ignore_eos=True)
        sched.add(Sequence(f"r{i}", None, r.prompt_token_ids, params, 0, i))
    iterations = preempted = largest = decode_sum = decode_iters = 0
    modelled = 0.0
    tokens_out = 0
    start = time.perf_counter()
    while sched.has_unfinished():
        out = sched.schedule()
        preempted += len(out.preempted)
        if out.is_empty:
            raise RuntimeError(f"nothing scheduled with {len(sched.running)} running")
        iterations += 1
        decodes = sum(1 for e in out.scheduled if e.is_decode)
        largest = max(largest, len(out.scheduled))
        if decodes == len(out.scheduled):
            decode_sum += decodes
            decode_iters += 1
        tokens = sum(e.num_tokens for e in out.scheduled)
        kv = sum(e.seq.num_computed_tokens + e.num_tokens for e in out.scheduled)
        modelled += model.iteration(tokens, kv)
        for e in out.scheduled:
            seq = e.seq
            seq.num_computed_tokens += e.num_tokens
            if seq.num_computed_tokens == seq.num_tokens:  # the chunk reaches the end: samples
                seq.output_token_ids.append(7)
                tokens_out += 1
                if len(seq.output_token_ids) >= seq.params.max_tokens:
                    seq.finish(FinishReason.LENGTH)
                    sched.remove(seq)
    total = sum(len(r.prompt_token_ids) + r.output_len for r in reqs)
    return {
        "workload": workload,
        "num_requests": count,
        "admission_reserve_tokens": reserve,
        "admission_tail_overcommit": tail,
        "max_num_seqs": max_num_seqs,
        "num_blocks": num_blocks,
        "iterations": iterations,
        "largest_batch": largest,
        "mean_decode_only_batch": round(decode_sum / max(1, decode_iters), 1),
        "decode_only_iterations": decode_iters,
        "preemptions": preempted,
        "modelled_seconds": round(modelled, 3),
        "modelled_total_tokens_per_s": round(total / modelled),
        "output_tokens": tokens_out,
        "host_seconds": round(time.perf_counter() - start, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--workloads", default="512/1024:1000,1024/512:1000,sharegpt:1000")
    ap.add_argument("--num-blocks", type=int, default=54_100)
    ap.add_argument("--reserves", default="2048", help="admission_reserve_tokens values to try")
    ap.add_argument("--tails", default="0", help="admission_tail_overcommit values to try")
    ap.add_argument("--max-num-seqs", type=int, default=1024)
    ap.add_argument("--model", default="llama-3-8b", choices=sorted(MODELS))
    ap.add_argument("--kv-bytes-per-token", type=int, default=None,
                    help="KV bytes per token (default: the model's; fp8 halves it)")
    ap.add_argument("--out", default=None)
    args = ap.parse_args()
    model = MODELS[args.model]
    if args.kv_bytes_per_token is not None:
        model = replace(model, kv_bytes_per_token=args.kv_bytes_per_token)
    rows = []
    for item in args.workloads.split(","):
        name, _, n = item.partition(":")
        if name not in WORKLOADS or not (n or "1").isdigit():
            ap.error(f"--workloads: {item!r} is not NAME[:REQUESTS] with NAME in {list(WORKLOADS)}")
        for reserve in (int(r) for r in args.reserves.split(",")):
            for tail in (float(t) for t in args.tails.split(",")):
                row = simulate(name, int(n or 1000), args.num_blocks, model, reserve, tail,
                               args.max_num_seqs)  # fmt: skip
                row["model"] = args.model
                rows.append(row)
                print(json.dumps(row), flush=True)
    if args.out:
        with open(args.out, "w") as f:
            json.dump({"command": " ".join(["python", *sys.argv]), "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
