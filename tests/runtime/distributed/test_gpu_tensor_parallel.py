"""Tensor parallelism on two CUDA GPUs (NCCL): the tokens of one GPU, CUDA graphs on every rank,
the network stage of the pipeline, and a killed rank stops the group without a hang."""

from __future__ import annotations

import gc
import os
import signal
import time
from pathlib import Path

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.distributed.executor import TensorParallelError, TensorParallelRunner
from runtime.pipeline.plans import network_plan

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(torch.cuda.device_count() < 2, reason="needs two CUDA GPUs"),
]

KV_BYTES = 1 << 28  # per rank: small, so that this process's engine leaves GPU 0 to rank 0
PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]


def _params(n: int = 12) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, prompt_logprobs=True)


@pytest.mark.parametrize(
    ("eager", "async_scheduling", "allreduce"),
    [(True, False, "nccl"), (False, False, "nccl"), (False, True, "nccl"),
     (True, False, "symm_mem"), (False, True, "symm_mem")],
    ids=["eager", "graphs-sync", "graphs-async", "symm-eager", "symm-graphs-async"],
)  # fmt: skip
def test_two_gpus_match_one_in_float32(
    tiny_llama: str, eager: bool, async_scheduling: bool, allreduce: str
) -> None:
    kw = dict(dtype="float32", device="cuda", max_num_seqs=8, async_scheduling=async_scheduling,
              enforce_eager=eager, kv_cache_memory_bytes=KV_BYTES)  # fmt: skip
    one = LLM(tiny_llama, **kw)  # type: ignore[arg-type]
    want = one.generate(PROMPTS, _params())
    del one
    gc.collect()
    torch.cuda.empty_cache()
    # symm_mem: a crossover of 16 KiB, so prefill rows take NCCL and decode rows symmetric memory
    with LLM(tiny_llama, tensor_parallel_size=2, allreduce=allreduce,
             symm_mem_max_bytes=16 << 10, **kw) as llm:  # type: ignore[arg-type]  # fmt: skip
        runner = llm.engine.runner
        assert isinstance(runner, TensorParallelRunner)
        assert [r.allreduce.split()[0] for r in runner.ready] == [allreduce] * 2
        # graphs captured on every rank (the collectives inside them), or none when eager
        assert [r.max_graph_batch for r in runner.ready] == [0 if eager else 8] * 2
        got = llm.generate(PROMPTS, _params())
        # decode-only iterations (no prompt logprobs): replayed graphs on both ranks
        plain = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
        plain_got = [o.token_ids for o in llm.generate(PROMPTS, plain)]
    for g, w in zip(got, want, strict=True):
        assert g.token_ids == w.token_ids
        torch.testing.assert_close(
            torch.tensor(g.prompt_logprobs[1:]), torch.tensor(w.prompt_logprobs[1:]), atol=2e-3,
            rtol=0,
        )  # fmt: skip
    assert plain_got == [w.token_ids for w in want]


@pytest.mark.parametrize("eager", [True, False], ids=["network-eager", "network-graphs"])
def test_a_network_stage_on_two_gpus_matches_one(
    tiny_llama: str, tmp_path: Path, eager: bool
) -> None:
    """Two nano-batches, the all-reduces on a stream and an 8-CTA communicator of their own
    (NanoFlow's network stage), with CUDA graphs and asynchronous scheduling: one GPU's tokens."""
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plan = tmp_path / "net.json"
    plan.write_text(network_plan("tiny-net", (8, 8), network_ctas=8, device_sms=sms).to_json())
    kw = dict(dtype="float32", device="cuda", max_num_seqs=8, async_scheduling=True,
              enforce_eager=eager, kv_cache_memory_bytes=KV_BYTES)  # fmt: skip
    one = LLM(tiny_llama, **kw)  # type: ignore[arg-type]
    want = [o.token_ids for o in one.generate(PROMPTS, _params())]
    del one
    gc.collect()
    torch.cuda.empty_cache()
    with LLM(tiny_llama, tensor_parallel_size=2, pipeline=str(plan), **kw) as llm:  # type: ignore[arg-type]
        runner = llm.engine.runner
        assert isinstance(runner, TensorParallelRunner)
        assert "tiny-net" in runner.ready[0].pipeline
        assert [r.max_graph_batch for r in runner.ready] == [0 if eager else 8] * 2
        assert [o.token_ids for o in llm.generate(PROMPTS, _params())] == want
        plain = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True)
        assert [o.token_ids for o in llm.generate(PROMPTS, plain)] == want


@pytest.mark.parametrize("allreduce", ["nccl", "symm_mem"], ids=["search", "symm-search"])
def test_the_network_search_on_two_gpus_matches_one(tiny_llama: str, allreduce: str) -> None:
    """pipeline='default' under TP: capped communicators made, all-reduce curves measured and
    agreed (with symm_mem also the dense forward's), a plan set searched on every rank; whatever
    it picks, one GPU's tokens."""
    kw = dict(dtype="float32", device="cuda", max_num_seqs=8, kv_cache_memory_bytes=KV_BYTES)
    one = LLM(tiny_llama, **kw)  # type: ignore[arg-type]
    want = [o.token_ids for o in one.generate(PROMPTS, _params())]
    del one
    gc.collect()
    torch.cuda.empty_cache()
    with LLM(tiny_llama, tensor_parallel_size=2, pipeline="default", allreduce=allreduce,
             **kw) as llm:  # type: ignore[arg-type]  # fmt: skip
        runner = llm.engine.runner
        assert isinstance(runner, TensorParallelRunner)
        assert "buckets" in runner.ready[0].pipeline
        dense = runner.ready[0].network_search["dense_allreduce_us"]
        assert (dense is None) == (allreduce == "nccl")
        assert [o.token_ids for o in llm.generate(PROMPTS, _params())] == want


def test_a_killed_rank_stops_the_group_without_a_hang(tiny_llama: str) -> None:
    llm = LLM(tiny_llama, dtype="bfloat16", device="cuda", max_num_seqs=8, tensor_parallel_size=2,
              kv_cache_memory_bytes=KV_BYTES)  # fmt: skip
    runner = llm.engine.runner
    assert isinstance(runner, TensorParallelRunner)
    pids = runner.pids
    llm.add_request([1, 2, 3], SamplingParams(max_tokens=100_000, ignore_eos=True))
    llm.step()
    os.kill(pids[1], signal.SIGKILL)
    start = time.monotonic()
    with pytest.raises(TensorParallelError, match=r"rank 1 \(pid \d+\) killed by SIGKILL"):
        while llm.has_unfinished_requests():
            llm.step()
    assert time.monotonic() - start < 30
    for pid in pids:
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
