"""The plan guard under tensor parallelism on the CPU: two gloo processes whose guards measured
differently reach the slowest rank's verdict (all_reduce MAX at the same iteration), and two
engine ranks with a guarded network-stage plan set decide alike, run on without deadlock and
give one process's tokens."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from runtime import LLM, SamplingParams
from runtime.pipeline.plans import network_plan
from runtime.pipeline.planset import Bucket, PlanSet

ROOT = Path(__file__).resolve().parents[3]
PROMPTS = ["The quick brown fox", "Programs ask questions, pick answers", "0 1 2 3"]
ENGINE = dict(dtype="float32", device="cpu", max_num_batched_tokens=16)

# one rank of the agreement test: bucket (4, 0, 64) measured plan 1.0 / dense 2.0 ms on rank 0
# and 3.0 / 2.0 on rank 1; bucket (1, 128, 16) 1.0 / 2.0 and 1.5 / 2.0
RANK = """
import json, sys
import torch.distributed as dist
from runtime.pipeline.guard import GuardConfig, PlanGuard, max_over_ranks
import torch

rank, store, out = int(sys.argv[1]), sys.argv[2], sys.argv[3]
dist.init_process_group("gloo", init_method=store, rank=rank, world_size=2)
times = {0: {(4, 0, 64): (1.0, 2.0), (1, 128, 16): (1.0, 2.0)},
         1: {(4, 0, 64): (3.0, 2.0), (1, 128, 16): (1.5, 2.0)}}[rank]
queue = []

class Watch:
    def __init__(self):
        self.value = queue.pop(0)
    def stop(self):
        pass
    def ms(self):
        return self.value

guard = PlanGuard(GuardConfig(samples=2), Watch, max_over_ranks(torch.device("cpu")))
for _ in range(4):
    for key, (plan, dense) in times.items():
        turn = guard.turn(key, "net.json")
        queue.append(plan if turn.runs_plan else dense)
        guard.timed(turn, lambda: None)
sides = [guard.turn(key, "net.json").side.value for key in times]
json.dump({"report": guard.report(), "sides": sides}, open(out, "w"))
dist.destroy_process_group()
"""


def test_two_ranks_that_measured_differently_reach_the_slowest_ranks_verdict(
    tmp_path: Path,
) -> None:
    script = tmp_path / "rank.py"
    script.write_text(RANK)
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    store = f"file://{tmp_path / 'store'}"
    procs = [
        subprocess.Popen([sys.executable, str(script), str(r), store, str(tmp_path / f"{r}.json")],
                         env=env, cwd=ROOT, stderr=subprocess.PIPE, text=True)
        for r in range(2)
    ]  # fmt: skip
    for p in procs:
        _, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
    results = [json.loads((tmp_path / f"{r}.json").read_text()) for r in range(2)]
    by_rank = [{tuple(b["bucket"]): b for b in r["report"]} for r in results]
    for report in by_rank:
        # rank 0 measured the decode plan faster, rank 1 slower: both veto it
        decode = report[(4, 0, 64)]
        assert decode["verdict"] == "vetoed"
        assert (decode["plan_ms"], decode["dense_ms"]) == (3.0, 2.0)
        # both measured the prefill plan faster: kept, at the slower rank's times
        prefill = report[(1, 128, 16)]
        assert prefill["verdict"] == "kept"
        assert (prefill["plan_ms"], prefill["dense_ms"]) == (1.5, 2.0)
    assert by_rank[0][(4, 0, 64)]["plan_samples_ms"] == [1.0, 1.0]  # each rank's own samples
    assert by_rank[1][(4, 0, 64)]["plan_samples_ms"] == [3.0, 3.0]
    assert results[0]["sides"] == results[1]["sides"] == ["dense", "plan"]


def network_set(directory: Path) -> str:
    """4 decodes: a network-stage plan (each nano-batch's all-reduces on a communicator of
    their own: more collectives than dense); every other shape dense."""
    plans = {"net.json": network_plan("tiny-net", (8, 8), network_ctas=8)}
    buckets = tuple(
        Bucket(d, p, 64, "net.json" if (d, p) == (4, 0) else None, 1.0, 1.1)
        for d in (0, 1, 4) for p in (0, 128) if d + p
    )  # fmt: skip
    ps = PlanSet("tiny", "cpu", 16, (0, 1, 4), (0, 128), (64,), buckets, 64,
                 kv_cache_dtype="float32", plans=plans)  # fmt: skip
    return str(ps.save(directory))


@pytest.mark.slow
def test_two_engine_ranks_veto_alike_and_match_one_process(
    tiny_models: dict[str, str], tmp_path: Path
) -> None:
    """A guarded network-stage plan at two gloo ranks, vetoed (a 99% gain asked): both ranks
    decide at the same iteration on the same agreed times and run the bucket dense after it
    (ranks that disagreed would deadlock: the plan issues its all-reduces on another
    communicator); the tokens are one process's."""
    params = SamplingParams(max_tokens=12, temperature=0, ignore_eos=True)
    want = [o.token_ids for o in LLM(tiny_models["llama"], **ENGINE).generate(PROMPTS, params)]  # type: ignore[arg-type]
    path = network_set(tmp_path)
    with LLM(tiny_models["llama"], tensor_parallel_size=2, pipeline=path, plan_guard_samples=2,
             plan_guard_min_gain=0.99, **ENGINE) as llm:  # type: ignore[arg-type]  # fmt: skip
        got = [o.token_ids for o in llm.generate(PROMPTS, params)]
        runner = llm.engine.runner
        reports = [runner.plan_guard_report(rank) for rank in range(2)]  # type: ignore[union-attr]
        assert got == want
        # the engine keeps working after the verdict
        assert [o.token_ids for o in llm.generate(PROMPTS, params)] == want
    decode = [next(b for b in r if b["bucket"] == [4, 0, 64]) for r in reports]
    assert [d["verdict"] for d in decode] == ["vetoed", "vetoed"]
    assert decode[0]["plan_ms"] == decode[1]["plan_ms"] > 0  # the agreed (slowest) times
    assert decode[0]["dense_ms"] == decode[1]["dense_ms"] > 0
    assert [len(d["plan_samples_ms"]) for d in decode] == [2, 2]
