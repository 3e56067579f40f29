"""The plan guard on a CUDA GPU: trial forwards and decode graph replays timed with CUDA events,
a vetoed bucket replaying its batch size's dense graph from then on, and the dense tokens."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.config import ModelConfig, read_json
from runtime.pipeline.plans import two_stream_plan
from runtime.pipeline.planset import Bucket, PlanSet, signature_of

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PLAN = "decode-plan.json"
PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]
GREEDY = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)


def decode_plan_set(tiny_llama: str, directory: Path) -> str:
    """4 decodes: a two-stream plan (attention on a second stream); every other shape dense."""
    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    sms = torch.cuda.get_device_properties(0).multi_processor_count
    plans = {PLAN: two_stream_plan("decode-plan", [2, 2], device_sms=sms)}
    buckets = tuple(
        Bucket(d, p, 64, PLAN if (d, p) == (4, 0) else None, 1.0, 1.1)
        for d in (0, 1, 4) for p in (0, 128) if d + p
    )  # fmt: skip
    ps = PlanSet("tiny", torch.cuda.get_device_name(0), sms, (0, 1, 4), (0, 128), (64,), buckets,
                 64, signature_of(cfg, 4), kv_cache_dtype="float32", plans=plans)  # fmt: skip
    return str(ps.save(directory))


@pytest.fixture(scope="module")
def cpu_tokens(tiny_llama: str) -> list[list[int]]:
    llm = LLM(tiny_llama, dtype="float32", device="cpu")
    return [o.token_ids for o in llm.generate(PROMPTS, GREEDY)]


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "cuda-graphs"])
def test_a_vetoed_plan_runs_dense_after_its_trial(
    tiny_llama: str, cpu_tokens: list[list[int]], eager: bool, tmp_path: Path
) -> None:
    """A 99% gain asked: vetoed after 2 samples of each side, timed on the device; with CUDA
    graphs the plan's graph replays only for its 2 trial samples, the dense graph of the same
    batch size for every other decode iteration."""
    path = decode_plan_set(tiny_llama, tmp_path)
    llm = LLM(tiny_llama, dtype="float32", device="cuda", max_num_seqs=8, enforce_eager=eager,
              pipeline=path, plan_guard_samples=2, plan_guard_min_gain=0.99)  # fmt: skip
    got = [o.token_ids for o in llm.generate(PROMPTS, GREEDY)]
    assert got == cpu_tokens
    report = {tuple(r["bucket"]): r for r in llm.engine.runner.plan_guard_report()}
    decode = report[(4, 0, 64)]
    assert decode["verdict"] == "vetoed"
    assert decode["plan_ms"] > 0 and decode["dense_ms"] > 0  # CUDA events' times
    assert len(decode["plan_samples_ms"]) == len(decode["dense_samples_ms"]) == 2
    if not eager:
        replays = llm.engine.runner.graph_replays()  # type: ignore[union-attr]
        assert replays[PLAN] == 2
        assert replays["dense"] >= 12  # the 2 dense samples and every iteration after the veto


def test_plan_guard_off_replays_the_plan_graph_every_time(
    tiny_llama: str, cpu_tokens: list[list[int]], tmp_path: Path
) -> None:
    path = decode_plan_set(tiny_llama, tmp_path)
    llm = LLM(tiny_llama, dtype="float32", device="cuda", max_num_seqs=8, pipeline=path,
              plan_guard=False)  # fmt: skip
    assert [o.token_ids for o in llm.generate(PROMPTS, GREEDY)] == cpu_tokens
    assert llm.engine.runner.plan_guard_report() == []
    replays = llm.engine.runner.graph_replays()  # type: ignore[union-attr]
    assert replays[PLAN] >= 14 and "dense" not in replays
