"""The plan guard: its decision logic (alternation, K samples, the margin, medians, agreement
by MAX), and engines on the CPU whose plan is made slow (vetoed: the bucket runs dense from then
on, tokens unchanged) or whose dense forward is made slow (the plan is kept); decode graphs
steered by the guard; ``plan_guard=False`` as before."""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.bench.__main__ import guard_summary
from runtime.config import EngineConfig, ModelConfig, read_json
from runtime.outputs import OutputKind
from runtime.pipeline import Unit, two_partition_plan
from runtime.pipeline.guard import (
    BucketState,
    GuardConfig,
    PlanGuard,
    Side,
    Turn,
    WallStopwatch,
)
from runtime.pipeline.plans import two_stream_plan
from runtime.pipeline.planset import Bucket, PlanSet, signature_of
from runtime.pipeline.runner import PipelineForward

KEY = (4, 0, 64)
DECODE_PLAN = "decode-plan.json"
PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30]
GREEDY = SamplingParams(max_tokens=16, temperature=0.0, ignore_eos=True)
SLEEP_S = 0.03  # far above a tiny model's forward on the CPU (about a millisecond)


class Scripted:
    """A stopwatch factory whose watches read the next scripted milliseconds (the guard's
    clock; what the engine tests measure for real)."""

    def __init__(self, ms: list[float]) -> None:
        self.ms: Iterator[float] = iter(ms)

    def __call__(self) -> Any:
        value = next(self.ms)
        return type("Watch", (), {"stop": lambda self: None, "ms": lambda self: value})()


def trial(guard: PlanGuard, key: tuple[int, int, int] = KEY, n: int = 8) -> list[Turn]:
    """``n`` iterations of bucket ``key``, each timed as the guard says."""
    turns = []
    for _ in range(n):
        turn = guard.turn(key, DECODE_PLAN)
        guard.timed(turn, lambda: None)
        turns.append(turn)
    return turns


def alternating(plan_ms: float, dense_ms: float, k: int = 4) -> list[float]:
    return [plan_ms, dense_ms] * k


def test_a_bucket_alternates_plan_and_dense_then_decides_once() -> None:
    guard = PlanGuard(GuardConfig(), Scripted(alternating(1.0, 2.0)))
    turns = trial(guard)
    assert [t.side for t in turns] == [Side.PLAN, Side.DENSE] * 4
    assert all(t.timed for t in turns)
    assert guard.state(KEY) is BucketState.TRIAL  # decided by the next iteration, not before
    after = trial(guard, n=3)  # no more scripted times: untimed
    assert guard.state(KEY) is BucketState.KEPT
    assert after == [Turn(KEY, Side.PLAN, False)] * 3
    [record] = guard.report()
    assert record["verdict"] == "kept" and record["plan"] == DECODE_PLAN
    assert (record["plan_ms"], record["dense_ms"]) == (1.0, 2.0)
    assert record["plan_samples_ms"] == [1.0] * 4 and record["dense_samples_ms"] == [2.0] * 4
    assert record["samples"] == 4 and record["trial_iterations"] == 8


@pytest.mark.parametrize(
    ("plan_ms", "state"),
    [(0.97, BucketState.KEPT), (0.98, BucketState.KEPT), (0.99, BucketState.VETOED),
     (1.0, BucketState.VETOED), (1.5, BucketState.VETOED)],
)  # fmt: skip
def test_the_plan_must_be_min_gain_faster(plan_ms: float, state: BucketState) -> None:
    guard = PlanGuard(GuardConfig(min_gain=0.02), Scripted(alternating(plan_ms, 1.0)))
    trial(guard, n=9)
    assert guard.state(KEY) is state
    # vetoed: every later iteration runs dense, untimed
    side = Side.PLAN if state is BucketState.KEPT else Side.DENSE
    assert trial(guard, n=2) == [Turn(KEY, side, False)] * 2


def test_k_samples_and_medians() -> None:
    """K=2 decides after 4 iterations; one outlier of the plan (a first call's compile) does
    not veto it under the median of K=4 (plan 1.0 ms but one 50 ms; dense 1.2 ms)."""
    short = PlanGuard(GuardConfig(samples=2), Scripted(alternating(2.0, 1.0, 2)))
    assert len(trial(short, n=4)) == 4
    short.turn(KEY, DECODE_PLAN)
    assert short.state(KEY) is BucketState.VETOED
    ms = [50.0, 1.2, 1.0, 1.2, 1.0, 1.2, 1.0, 1.2]
    guard = PlanGuard(GuardConfig(samples=4), Scripted(ms))
    trial(guard, n=9)
    assert guard.state(KEY) is BucketState.KEPT
    assert guard.report()[0]["plan_mean_ms"] == pytest.approx(13.25)


def test_buckets_are_guarded_independently() -> None:
    """Two buckets' iterations interleaved: each alternates by its own hit count and decides
    on its own times (4/0/64 plan 1.0 against dense 2.0 ms; 1/128/16 plan 3.0 against 2.0)."""
    other = (1, 128, 16)
    guard = PlanGuard(GuardConfig(), Scripted([1.0, 3.0, 2.0, 2.0] * 4))
    for _ in range(8):
        for key in (KEY, other):
            guard.timed(guard.turn(key, DECODE_PLAN), lambda: None)
    guard.turn(KEY, DECODE_PLAN)
    assert (guard.state(KEY), guard.state(other)) == (BucketState.KEPT, BucketState.TRIAL)
    guard.turn(other, DECODE_PLAN)
    assert guard.state(other) is BucketState.VETOED
    assert [r["bucket"] for r in guard.report()] == [[1, 128, 16], [4, 0, 64]]


def test_the_ranks_agree_on_the_slowest_ranks_times() -> None:
    """This rank measured the plan faster; the agreement (the group's MAX) says another rank
    measured it slower than dense: vetoed here too, with the agreed times recorded."""
    seen: list[list[float]] = []

    def other_rank_slower(values: list[float]) -> list[float]:
        seen.append(values)
        return [max(v, o) for v, o in zip(values, [3.0, 3.0, 2.0], strict=True)]

    guard = PlanGuard(GuardConfig(), Scripted(alternating(1.0, 2.0)), other_rank_slower)
    trial(guard, n=9)
    assert seen == [[0.5, 1.0, 2.0]]  # once, at the decision: this rank's ratio and medians
    assert guard.state(KEY) is BucketState.VETOED
    record = guard.report()[0]
    assert (record["ratio"], record["plan_ms"], record["dense_ms"]) == (3.0, 3.0, 2.0)
    assert record["plan_samples_ms"] == [1.0] * 4  # this rank's own


def modal_trial(guard: PlanGuard, modes: list[str]) -> list[Turn]:
    """One iteration of bucket KEY per mode, each timed as the guard says."""
    turns = []
    for mode in modes:
        turns.append(guard.turn(KEY, DECODE_PLAN, mode))
        guard.timed(turns[-1], lambda: None)
    return turns


def test_a_pair_counts_only_when_both_sides_ran_the_same_kind_of_forward() -> None:
    """The first pair is a graph replay of the plan against an eager dense forward (5 ms: a
    kind slower, not a plan faster): it does not count, the trial runs a third pair, and the
    two graph pairs (plan 1.0 against dense 0.9 ms) veto the plan. Compared by medians over
    all four dense samples the slow eager one would have kept it."""
    guard = PlanGuard(GuardConfig(samples=2), Scripted([1.0, 5.0, 1.0, 0.9, 1.0, 0.9]))
    turns = modal_trial(guard, ["graph", "eager"] + ["graph"] * 4)
    assert [t.index for t in turns] == list(range(6)) and all(t.timed for t in turns)
    assert guard.state(KEY) is BucketState.TRIAL  # the first pair did not count
    assert guard.turn(KEY, DECODE_PLAN, "graph") == Turn(KEY, Side.DENSE, False, "graph")
    [record] = guard.report()
    assert record["verdict"] == "vetoed" and (record["pairs"], record["dropped_pairs"]) == (2, 1)
    assert record["dense_samples_ms"] == [0.9, 0.9] and record["trial_iterations"] == 6
    assert record["ratio"] == pytest.approx(1.0 / 0.9, abs=1e-4)


def test_a_trial_of_mismatched_pairs_ends_vetoed() -> None:
    """Every pair mixes kinds: after 4 x samples pairs the trial ends, and with no pair that
    counts the plan is not shown faster: vetoed, with no times to report."""
    guard = PlanGuard(GuardConfig(samples=1), Scripted([1.0, 9.0] * 4))
    modal_trial(guard, ["graph", "eager"] * 4)
    guard.turn(KEY, DECODE_PLAN, "graph")
    [record] = guard.report()
    assert record["verdict"] == "vetoed" and (record["pairs"], record["dropped_pairs"]) == (0, 4)
    assert record["ratio"] is None and record["plan_ms"] is None
    assert guard_summary([record]) == f"4/0/64 {DECODE_PLAN} vetoed (4 pairs, none of one kind)"


def test_the_pairs_ratios_decide_not_the_sides_medians() -> None:
    """Pairs (1 vs 2), (3 vs 2), (3 vs 4) ms: ratios 0.5, 1.5, 0.75, median 0.75, kept; the
    sides' medians (3 against 2 ms) would have vetoed it."""
    guard = PlanGuard(GuardConfig(samples=3), Scripted([1.0, 2.0, 3.0, 2.0, 3.0, 4.0]))
    trial(guard, n=7)
    [record] = guard.report()
    assert record["verdict"] == "kept" and record["ratio"] == 0.75
    assert "kept (ratio 0.750 over 3 pairs: 3.00 vs dense 2.00 ms)" in guard_summary([record])
    assert (record["plan_ms"], record["dense_ms"]) == (3.0, 2.0)


def test_a_verdict_is_tried_again_after_recheck_every_iterations() -> None:
    """Vetoed (plan 2 against 1 ms; the first calls compiling, say); 3 iterations later a new
    trial measures plan 1 against 2 ms and keeps it; recheck_every=0 never tries again."""
    guard = PlanGuard(GuardConfig(samples=1, recheck_every=3), Scripted([2.0, 1.0, 1.0, 2.0]))
    turns = trial(guard, n=8)
    assert [(t.side, t.timed) for t in turns] == [
        (Side.PLAN, True), (Side.DENSE, True),
        (Side.DENSE, False), (Side.DENSE, False), (Side.DENSE, False),  # vetoed
        (Side.PLAN, True), (Side.DENSE, True),  # the second trial
        (Side.PLAN, False),  # kept
    ]  # fmt: skip
    [record] = guard.report()
    assert record["verdicts"] == ["vetoed", "kept"] and record["verdict"] == "kept"
    never = PlanGuard(GuardConfig(samples=1, recheck_every=0), Scripted([2.0, 1.0]))
    assert [t.timed for t in trial(never, n=200)][2:] == [False] * 198
    assert never.report()[0]["verdicts"] == ["vetoed"]


def test_configuration_is_validated() -> None:
    with pytest.raises(ValueError, match="samples must be >= 1"):
        GuardConfig(samples=0)
    with pytest.raises(ValueError, match="recheck_every must be >= 0"):
        GuardConfig(recheck_every=-1)
    with pytest.raises(ValueError, match=r"min_gain must be in \[0, 1\)"):
        EngineConfig(plan_guard_min_gain=1.0)
    assert EngineConfig().guard_config() == GuardConfig(4, 0.02, 4096)
    assert EngineConfig(plan_guard_recheck_every=0).guard_config() == GuardConfig(4, 0.02, 0)
    assert EngineConfig(plan_guard=False).guard_config() is None
    with pytest.raises(ValueError, match="samples must be >= 1"):  # checked when off too
        EngineConfig(plan_guard=False, plan_guard_samples=0)


def test_the_wall_stopwatch_times_what_ran() -> None:
    guard = PlanGuard(GuardConfig(samples=1), WallStopwatch)
    guard.timed(guard.turn(KEY, DECODE_PLAN), lambda: time.sleep(0.02))
    guard.timed(guard.turn(KEY, DECODE_PLAN), lambda: None)
    guard.turn(KEY, DECODE_PLAN)
    record = guard.report()[0]
    assert record["plan_ms"] >= 20.0 > record["dense_ms"]
    assert record["verdict"] == "vetoed"


# ---------------------------------------------------------------- engines on the CPU
def plan_set(signature: dict[str, int]) -> PlanSet:
    """4 decodes: a two-stream plan; prefill shapes: a partitioned plan; 1 decode: dense (one
    context bucket: every decode batch of 3-4 rows is one bucket)."""
    prefill = two_partition_plan("prefill-plan", [48, 80], attention_sms=8, device_sms=16)
    base = two_stream_plan("decode-plan", [2, 2], device_sms=16)
    ops = tuple(replace(o, unit=Unit(0, 1, max_sms=8)) if o.op == "attention" else o
                for o in base.ops)  # fmt: skip
    plans = {"prefill-plan.json": prefill, DECODE_PLAN: replace(base, ops=ops)}
    buckets = tuple(
        Bucket(d, p, c, "prefill-plan.json" if p else (DECODE_PLAN if d == 4 else None), 1.0, 1.1)
        for d in (0, 1, 4) for p in (0, 128) for c in (64,) if d + p
    )  # fmt: skip
    return PlanSet("tiny", "cpu", 16, (0, 1, 4), (0, 128), (64,), buckets, 64, signature,
                   kv_cache_dtype="float32", plans=plans)  # fmt: skip


@pytest.fixture(scope="module")
def set_path(tiny_llama: str, tmp_path_factory: pytest.TempPathFactory) -> str:
    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    return str(plan_set(signature_of(cfg, 4)).save(tmp_path_factory.mktemp("guard-set")))


@pytest.fixture(scope="module")
def dense_tokens(tiny_llama: str) -> list[list[int]]:
    llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64)
    return [o.token_ids for o in llm.generate(PROMPTS, GREEDY)]


def guarded_engine(tiny_llama: str, set_path: str, **kwargs: Any) -> PipelineForward:
    llm = LLM(tiny_llama, dtype="float32", device="cpu", max_num_batched_tokens=64,
              pipeline=set_path, **kwargs)  # fmt: skip
    fwd = llm.engine.runner.forward
    assert isinstance(fwd, PipelineForward)
    fwd.llm = llm  # type: ignore[attr-defined]  # kept alive with the forward
    return fwd


def counted(
    fn: Callable[..., torch.Tensor], calls: list[int], sleep_s: float = 0.0
) -> Callable[..., torch.Tensor]:
    """``fn`` with its calls counted, after a sleep when given (a unit-level fake for a slower
    forward)."""

    def run(input_ids: torch.Tensor, ctx: Any) -> torch.Tensor:
        calls.append(int(input_ids.shape[0]))
        time.sleep(sleep_s)
        return fn(input_ids, ctx)

    return run


def spy_turns(fwd: PipelineForward) -> list[Turn]:
    """Every turn the engine's guard hands out, in order."""
    assert fwd.guard is not None
    turns: list[Turn] = []
    real = fwd.guard.turn

    def turn(key: tuple[int, int, int], plan: str, mode: str = "eager") -> Turn:
        turns.append(real(key, plan, mode))
        return turns[-1]

    fwd.guard.turn = turn  # type: ignore[method-assign]
    return turns


def decode_turns(turns: list[Turn]) -> list[Turn]:
    """The turns of the decode bucket (4 decodes, no prefill)."""
    return [t for t in turns if t.key == KEY]


def test_a_slow_plan_is_vetoed_and_its_bucket_runs_dense(
    tiny_llama: str, set_path: str, dense_tokens: list[list[int]]
) -> None:
    fwd = guarded_engine(tiny_llama, set_path)
    ex = fwd.executors[DECODE_PLAN]
    calls: list[int] = []
    ex.forward = counted(ex.forward, calls, SLEEP_S)  # type: ignore[method-assign]
    turns = spy_turns(fwd)
    got = fwd.llm.generate(PROMPTS, GREEDY)  # type: ignore[attr-defined]
    assert [o.token_ids for o in got] == dense_tokens
    decode = decode_turns(turns)
    assert len(decode) > 10  # 4 decodes for most of the 16 tokens
    assert [t.side for t in decode[:8]] == [Side.PLAN, Side.DENSE] * 4
    assert all(t.timed for t in decode[:8])
    # the verdict, then every later iteration of the bucket: dense, untimed
    assert all(t == Turn(t.key, Side.DENSE, False) for t in decode[8:])
    assert len(calls) == 4  # the plan ran for its 4 trial samples only
    assert fwd.guard is not None
    verdicts = {tuple(r["bucket"]): r for r in fwd.guard.report()}
    record = verdicts[KEY]
    assert record["verdict"] == "vetoed"
    assert record["plan_ms"] > SLEEP_S * 1e3 > record["dense_ms"]


def test_a_fast_plan_is_kept(tiny_llama: str, set_path: str, dense_tokens: list[list[int]]) -> None:
    """The dense forward made slow (the plan's executors run the layers themselves): the plan
    is kept and runs every later iteration of its bucket."""
    fwd = guarded_engine(tiny_llama, set_path)
    ex = fwd.executors[DECODE_PLAN]
    calls: list[int] = []
    ex.forward = counted(ex.forward, calls)  # type: ignore[method-assign]
    fwd.model = counted(fwd.model, [], SLEEP_S)  # type: ignore[assignment]
    turns = spy_turns(fwd)
    got = fwd.llm.generate(PROMPTS, GREEDY)  # type: ignore[attr-defined]
    assert [o.token_ids for o in got] == dense_tokens
    decode = decode_turns(turns)
    assert all(t == Turn(t.key, Side.PLAN, False) for t in decode[8:])
    assert len(calls) == len(decode) - 4  # every decode iteration but the 4 dense samples
    assert fwd.guard is not None
    assert {tuple(r["bucket"]): r["verdict"] for r in fwd.guard.report()}[KEY] == "kept"


def test_plan_guard_off_runs_the_plan_set_as_before(
    tiny_llama: str, set_path: str, dense_tokens: list[list[int]]
) -> None:
    fwd = guarded_engine(tiny_llama, set_path, plan_guard=False)
    assert fwd.guard is None
    ex = fwd.executors[DECODE_PLAN]
    calls: list[int] = []
    ex.forward = counted(ex.forward, calls, SLEEP_S)  # type: ignore[method-assign]
    got = fwd.llm.generate(PROMPTS, GREEDY)  # type: ignore[attr-defined]
    assert [o.token_ids for o in got] == dense_tokens
    assert len(calls) > 10  # every decode iteration ran the (slow) plan
    # decode graphs: the plan's only, as before; with the guard, dense beside it
    assert set(fwd.graph_variants(4)) == {DECODE_PLAN}
    guarded = guarded_engine(tiny_llama, set_path)
    assert set(guarded.graph_variants(4)) == {DECODE_PLAN, None}
    assert set(guarded.graph_variants(1)) == {None}  # a dense bucket: nothing to verify


def test_a_profiled_forward_stays_out_of_the_trial(
    tiny_llama: str, set_path: str, dense_tokens: list[list[int]]
) -> None:
    """Every iteration profiled (per-operation hooks, as ``--profile-every`` runs one: eager,
    each operation wrapped): none takes a trial's turn or sample, each runs the plan (the
    bucket undecided) untimed; the tokens are dense's. Then unprofiled iterations start the
    trial from its first turn, and a profiled one after the veto runs dense."""
    fwd = guarded_engine(tiny_llama, set_path)
    ex = fwd.executors[DECODE_PLAN]
    calls: list[int] = []
    ex.forward = counted(ex.forward, calls, SLEEP_S)  # type: ignore[method-assign]
    turns = spy_turns(fwd)
    engine = fwd.llm.engine  # type: ignore[attr-defined]
    ids = [engine.add_request(p, GREEDY, output_kind=OutputKind.FINAL_ONLY) for p in PROMPTS]
    hooked: list[str] = []

    def hook(op: Any, run: Callable[[], None]) -> None:
        hooked.append(op.name)
        run()

    finished: dict[str, list[int]] = {}
    while engine.has_unfinished_requests():
        engine.runner.profile_hook = hook
        finished.update((o.request_id, o.token_ids) for o in engine.step() if o.finished)
    assert hooked and [finished[i] for i in ids] == dense_tokens
    assert decode_turns(turns) == [] and fwd.guard is not None
    assert fwd.guard.state(KEY) is None and fwd.guard.report() == []
    assert len(calls) > 10  # every decode iteration ran the plan
    fwd.llm.generate(PROMPTS, GREEDY)  # type: ignore[attr-defined]
    assert [t.side for t in decode_turns(turns)[:8]] == [Side.PLAN, Side.DENSE] * 4
    assert fwd.guard.state(KEY) is BucketState.VETOED
    assert fwd.guard.untimed_turn(KEY) == Turn(KEY, Side.DENSE, False)


def test_decode_graphs_replay_the_side_the_guard_names(
    tiny_llama: str, set_path: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The decode graphs of a guarded forward: ``load`` takes the guard's turn and picks the
    plan's or the dense graph; the replay is timed (here the graph's forward run eagerly, as
    the CPU cannot capture); after the veto every load picks the dense graph."""
    import runtime.cuda_graph as cuda_graph
    from runtime.cuda_graph import DecodeGraphs, DecodeInputs

    monkeypatch.setattr(cuda_graph, "pinned", lambda t: t)  # no pinned memory without CUDA
    fwd = guarded_engine(tiny_llama, set_path)
    ex = fwd.executors[DECODE_PLAN]
    ex.forward = counted(ex.forward, [], SLEEP_S)  # type: ignore[method-assign]
    r = fwd.llm.engine.runner  # type: ignore[attr-defined]
    graphs = DecodeGraphs(r.model, r.ops, r.kv_caches, r.scratch_block, r.blocks.block_size,
                          fwd.llm.engine.max_model_len, [1, 2, 4], fwd)  # type: ignore[attr-defined]  # fmt: skip
    assert set(graphs.forwards) == {(1, None), (2, None), (4, None), (4, DECODE_PLAN)}
    lens = torch.tensor([60, 64, 64, 68], dtype=torch.int32)
    inputs = DecodeInputs(
        input_ids=torch.tensor([5, 6, 7, 8]), positions=(lens - 1).long(),
        slot_mapping=torch.full((4,), r.scratch_block * r.blocks.block_size),
        context_lens=lens, block_tables=torch.full((4, 5), r.scratch_block, dtype=torch.int32),
    )  # fmt: skip
    loaded = []
    for _ in range(12):
        graphs.load(inputs)
        loaded.append(graphs.loaded)
        with torch.inference_mode():  # what replay times: the graph of the loaded key
            graphs.variants.timed(graphs.turn, lambda: graphs.forward(graphs.loaded))  # type: ignore[arg-type]
    assert loaded == [(4, DECODE_PLAN), (4, None)] * 4 + [(4, None)] * 4
    assert fwd.guard is not None and fwd.guard.state(KEY) is BucketState.VETOED


@pytest.mark.parametrize("guard", ["on", "off"])
def test_the_benchmark_records_each_guarded_bucket(set_path: str, tiny_llama: str, guard: str,
                                                   tmp_path: Path) -> None:  # fmt: skip
    from runtime.bench.__main__ import execute
    from runtime.bench.options import build_parser

    out = tmp_path / "bench.json"
    args = build_parser().parse_args([
        "--model", tiny_llama, "--load-format", "auto", "--device", "cpu",
        "--workloads", "512/512", "--num-requests", "4", "--scale", "0.02",
        "--mode", "nanoflow,nanoflow-sequential", "--plan", set_path, "--plan-guard", guard,
        "--plan-guard-samples", "1", "--out", str(out),
    ])  # fmt: skip
    assert execute(args, "test") == 0
    nano, split = json.loads(out.read_text())
    assert "plan_guard" not in split  # nanoflow-sequential measures the split: unguarded
    if guard == "off":
        assert "plan_guard" not in nano
        return
    buckets = {tuple(r["bucket"]): r for r in nano["plan_guard"]}
    decode = buckets[KEY]
    assert decode["plan"] == DECODE_PLAN and decode["samples"] == 1
    assert decode["verdict"] in ("kept", "vetoed")
    assert decode["plan_ms"] > 0 and decode["dense_ms"] > 0
    assert len(decode["plan_samples_ms"]) == len(decode["dense_samples_ms"]) == 1
