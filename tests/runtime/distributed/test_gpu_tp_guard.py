"""The plan guard at two GPUs (NCCL): a guarded network-stage plan set, CUDA graphs on both
ranks, asynchronous scheduling; both ranks decide at the same iteration on the agreed (slowest)
times, keep running in step (no deadlock) and give one GPU's tokens."""

from __future__ import annotations

import gc
from pathlib import Path

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.distributed.executor import TensorParallelRunner
from runtime.pipeline.plans import network_plan
from runtime.pipeline.planset import Bucket, PlanSet

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"),
]

KV_BYTES = 1 << 28
PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]
GREEDY = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)


def network_set(directory: Path) -> str:
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plans = {"net.json": network_plan("tiny-net", (2, 2), network_ctas=8, device_sms=sms)}
    buckets = tuple(
        Bucket(d, p, 64, "net.json" if (d, p) == (4, 0) else None, 1.0, 1.1)
        for d in (0, 1, 4) for p in (0, 128) if d + p
    )  # fmt: skip
    ps = PlanSet("tiny", torch.cuda.get_device_name(0), sms, (0, 1, 4), (0, 128), (64,), buckets,
                 64, kv_cache_dtype="float32", plans=plans)  # fmt: skip
    return str(ps.save(directory))


@pytest.mark.parametrize("min_gain", [0.99, 0.0], ids=["vetoed", "either"])
def test_two_gpus_agree_on_the_verdict_and_match_one(
    tiny_llama: str, min_gain: float, tmp_path: Path
) -> None:
    kw = dict(dtype="float32", device="cuda", max_num_seqs=8, kv_cache_memory_bytes=KV_BYTES,
              async_scheduling=True)  # fmt: skip
    one = LLM(tiny_llama, **kw)  # type: ignore[arg-type]
    want = [o.token_ids for o in one.generate(PROMPTS, GREEDY)]
    del one
    gc.collect()
    torch.cuda.empty_cache()
    with LLM(tiny_llama, tensor_parallel_size=2, pipeline=network_set(tmp_path),
             plan_guard_samples=2, plan_guard_min_gain=min_gain, **kw) as llm:  # type: ignore[arg-type]  # fmt: skip
        runner = llm.engine.runner
        assert isinstance(runner, TensorParallelRunner)
        assert [r.max_graph_batch for r in runner.ready] == [8, 8]
        got = [o.token_ids for o in llm.generate(PROMPTS, GREEDY)]
        again = [o.token_ids for o in llm.generate(PROMPTS, GREEDY)]
        reports = [runner.plan_guard_report(rank) for rank in range(2)]
    assert got == want and again == want
    decode = [next(b for b in r if b["bucket"] == [4, 0, 64]) for r in reports]
    assert decode[0]["verdict"] == decode[1]["verdict"] != "trial"
    if min_gain > 0.5:
        assert decode[0]["verdict"] == "vetoed"
    assert decode[0]["plan_ms"] == decode[1]["plan_ms"] > 0
    assert decode[0]["dense_ms"] == decode[1]["dense_ms"] > 0
