"""The network stage's search: the plan simulator, and dense or a network-stage plan per
bucket from rates and all-reduce curves."""

from __future__ import annotations

import pytest

from runtime.pipeline.plans import NETWORK_OPS, TP_LLAMA_OPS, network_plan
from runtime.pipeline.validate import validate
from runtime.tune.costs import BatchShape
from runtime.tune.network import (
    CollectiveCurve,
    NetworkCosts,
    NetworkSearchConfig,
    Rates,
    dense_plan,
    search_network,
    simulate,
)
from runtime.tune.profiles import ModelShape

# one rank of Llama-3-70B at TP=2
SHAPE = ModelShape(hidden_size=8192, q_size=4096, kv_size=512, intermediate_size=14336,
                   num_layers=80, head_dim=128, dtype_bytes=2)  # fmt: skip
RATES = Rates(device_sms=132, gemm_tflops=700.0, hbm_gb_s=4000.0)
SMALL = NetworkSearchConfig(decode_points=(0, 64, 512), prefill_points=(0, 4096),
                            context_points=(1024,))  # fmt: skip


def curve(cap: int | None, latency_us: float, gb_s: float) -> CollectiveCurve:
    rows = (1, 256, 1024, 8192)
    return CollectiveCurve(cap, tuple((r, latency_us + r * 8192 * 2 / (gb_s * 1e3)) for r in rows))


def test_the_simulator_hides_one_nano_batch_collective_under_the_other_one_compute() -> None:
    ops, net = ("gemm", "o_allreduce"), ("o_allreduce",)

    def cost(op: str, a: int, b: int) -> float:  # a GEMM: 1 µs a row; its all-reduce: 0.5
        return (b - a) * (0.5 if op in net else 1.0)

    assert simulate(dense_plan(100, ops, 132), ops, cost, 2) == 300.0
    plan = network_plan("p", (50, 50), None, 132, ops, net)
    # layer 0: gemm#0 [0, 50], ar#0 [50, 75] beside gemm#1 [50, 100], ar#1 [100, 125];
    # layer 1: gemm#0 [100, 150] (its stream), ar#0 [150, 175], gemm#1 [150, 200], ar#1 to 225
    assert simulate(plan, ops, cost, 2, network=net) == 225.0
    # compute beside a collective slowed 2x for the overlapping part: each gemm#1 +25
    assert simulate(plan, ops, cost, 1, slowdown=2.0, network=net) == 150.0
    # a host that takes 60 µs to issue a step: issue-bound (the 4th step issued at 240)
    assert simulate(plan, ops, cost, 1, network=net, issue_us=60.0) == 240.0 + 25.0


def test_a_costly_allreduce_gets_a_network_stage_on_large_batches_and_dense_on_small() -> None:
    costs = NetworkCosts(SHAPE, RATES, (curve(None, 15, 300), curve(8, 15, 150)))
    planset, choices = search_network(costs, "llama-3-70b", "H200", {}, SMALL)
    by_shape = {(c.shape.decodes, c.shape.prefill_tokens): c for c in choices}
    big = by_shape[(64, 4096)]
    assert big.plan is not None and big.predicted_us < 0.97 * big.dense_us
    validate(big.plan, TP_LLAMA_OPS, 132, NETWORK_OPS)
    assert sum(big.plan.split("attention").sizes) == 64 + 4096
    small = by_shape[(64, 0)]  # 64 decodes: halving the GEMMs re-reads the weights for nothing
    assert small.plan is None and "not 3% below dense" in small.reason
    assert planset.plan_for(64, 4096, 1024) == big.plan
    assert planset.plan_for(64, 0, None) is None


def test_a_small_mixed_batch_stays_dense_when_the_host_cannot_issue_a_pipeline_in_time() -> None:
    costs = NetworkCosts(SHAPE, RATES, (curve(None, 15, 300), curve(8, 15, 150)))
    cfg = NetworkSearchConfig(decode_points=(128,), prefill_points=(256,), context_points=(1024,))
    _, (eager,) = search_network(costs, "m", "H200", {}, cfg)
    assert eager.plan is None  # 128 decodes + 256 prefill rows: eager, issue-bound as a pipeline
    fast_host = NetworkCosts(SHAPE, Rates(132, 700.0, 4000.0, pipeline_issue_us=0.0,
                                          dense_issue_us=0.0), costs.curves)  # fmt: skip
    _, (graphed,) = search_network(fast_host, "m", "H200", {}, cfg)
    assert graphed.plan is not None


def test_a_free_allreduce_or_a_serial_device_leaves_everything_dense() -> None:
    free = NetworkCosts(SHAPE, RATES, (curve(None, 0.01, 1e6),))
    _, choices = search_network(free, "m", "H200", {}, SMALL)
    assert all(c.plan is None for c in choices)
    serial = NetworkCosts(SHAPE, Rates(1, 0.1, 10.0, concurrent=False), (curve(None, 15, 300),))
    _, choices = search_network(serial, "m", "cpu", {}, SMALL)
    assert all(c.plan is None and "nothing overlaps" in c.reason for c in choices)


def test_the_dense_price_is_the_sum_of_the_layer_operations() -> None:
    costs = NetworkCosts(SHAPE, RATES, (curve(None, 15, 300),)).at(BatchShape(256, 0, 1024))
    one_layer = sum(costs.op_us(op, 0, 256) for op in TP_LLAMA_OPS)
    plan = dense_plan(256, TP_LLAMA_OPS, 132)
    assert simulate(plan, TP_LLAMA_OPS, costs.op_us, 3) == pytest.approx(3 * one_layer)


def test_the_dense_forward_is_priced_with_its_own_allreduce_and_the_plans_with_nccl() -> None:
    nccl = (curve(None, 55, 300), curve(8, 60, 150))
    fast = curve(None, 10, 300)  # the group's symmetric-memory path (the dense forward's)
    shape = BatchShape(512, 0, 1024)
    cfg = NetworkSearchConfig(decode_points=(512,), prefill_points=(0,), context_points=(1024,))
    _, (plain,) = search_network(NetworkCosts(SHAPE, RATES, nccl), "m", "H200", {}, cfg)
    _, (symm,) = search_network(NetworkCosts(SHAPE, RATES, nccl, dense=fast), "m", "H200", {}, cfg)
    # 2 all-reduces x 80 layers, 45 µs less each: the dense forward only
    assert plain.dense_us - symm.dense_us == pytest.approx(2 * 80 * 45, rel=1e-6)
    costs = NetworkCosts(SHAPE, RATES, nccl, dense=fast).at(shape)
    assert costs.op_us("o_allreduce", 0, 1) == pytest.approx(nccl[0].us(1))
    assert costs.op_us("o_allreduce", 0, 1, dense=True) == pytest.approx(fast.us(1))
    assert costs.op_us("o_allreduce", 0, 1, 8, dense=False) == pytest.approx(nccl[1].us(1))
