"""The dense layer as a one-nano-batch plan (the timeline's baseline) computes the dense forward."""

from __future__ import annotations

import torch

from runtime import LLM
from runtime.pipeline.executor import PipelineExecutor
from runtime.pipeline.plans import two_stream_plan
from runtime.tune.inputs import make_batch, shared_kv_caches
from runtime.tune.timeline import dense_plan


def test_dense_plan_is_the_dense_forward(tiny_llama: str) -> None:
    llm = LLM(tiny_llama, device="cpu", dtype="float32", enforce_eager=True)
    engine = llm.engine
    names = [op.name for op in engine.model.operations()[0]]
    plan = dense_plan(two_stream_plan("two", [4, 8], device_sms=16), names)
    assert plan.is_single_stream and [s.sizes for s in plan.ops] == [(12,)] * len(names)
    kv = shared_kv_caches(engine, 1 << 20)
    ids, ctx = make_batch(engine, kv, 8, 24, [4], seed=3)
    got = PipelineExecutor(plan, engine.model, engine.ops).forward(ids, ctx)
    torch.testing.assert_close(got, engine.model(ids, ctx), rtol=0, atol=0)
