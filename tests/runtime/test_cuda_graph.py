"""Decode CUDA graphs keyed by (batch size, plan): what gets captured for a plan set whose plan
for a decode batch size differs between context buckets, and which graph a loaded batch's real
context picks; under the "by-context" decode choice, each (batch size, plan) twice (uniform and
ragged contexts), the loaded rows' real lengths picking one. The CPU cannot capture; these build
the graphs' table without capturing and run the forward each key would capture eagerly."""

from __future__ import annotations

import dataclasses
import importlib
import os
from fractions import Fraction
from pathlib import Path

import pytest
import torch

from kernels import DecodeChoice, Ops
from runtime import LLM
from runtime.config import ModelConfig, read_json
from runtime.cuda_graph import (
    ContextVariant,
    DecodeGraphs,
    DecodeInputs,
    OneForward,
    capture_summary,
)
from runtime.pipeline.plans import two_stream_plan
from runtime.pipeline.planset import Bucket, PlanSet, signature_of
from runtime.pipeline.runner import PipelineForward

PLAN = "decode-plan.json"
BUCKETS = [1, 2, 4]


def long_context_set(signature: dict[str, int], device_sms: int = 16) -> PlanSet:
    """4 decodes: dense at mean context 16, a two-stream plan at 64 (as the H200 search's fp8
    candidate: a pipeline only at the longer context); everything else dense."""
    plans = {PLAN: two_stream_plan("decode-plan", [2, 2], device_sms=device_sms)}
    buckets = tuple(
        Bucket(d, p, c, PLAN if (d, p, c) == (4, 0, 64) else None, 1.0, 1.0, "")
        for d in (0, 1, 4) for p in (0, 128) for c in (16, 64) if d + p
    )  # fmt: skip
    return PlanSet("tiny", "cpu", device_sms, (0, 1, 4), (0, 128), (16, 64), buckets, 16, signature,
                   kv_cache_dtype="float32", plans=plans)  # fmt: skip


@pytest.fixture(scope="module")
def engine(tiny_llama: str, tmp_path_factory: pytest.TempPathFactory) -> object:
    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    path = long_context_set(signature_of(cfg, 4)).save(tmp_path_factory.mktemp("set"))
    return LLM(tiny_llama, dtype="float32", device="cpu", pipeline=str(path)).engine


def graphs_for(
    engine: object,
    forward: object,
    ops: Ops | None = None,
    kv_caches: list | None = None,  # type: ignore[type-arg]
) -> DecodeGraphs:
    r = engine.runner  # type: ignore[attr-defined]
    return DecodeGraphs(r.model, ops or r.ops, kv_caches or r.kv_caches, r.scratch_block,
                        r.blocks.block_size, engine.max_model_len, BUCKETS, forward)  # type: ignore[attr-defined,arg-type]  # fmt: skip


def triton_ops(engine: object, kernel: str) -> Ops:
    """The engine's operators with the Triton attention backend running ``kernel`` (the CPU
    registry offers only the torch one; Triton's kernels run on its CPU interpreter)."""
    pytest.importorskip("triton")
    from kernels.attention.triton_attention import TritonAttention

    choice = DecodeChoice.parse(kernel)
    attention = TritonAttention(torch.device("cpu"), choice=choice)
    return dataclasses.replace(engine.runner.ops, paged_attention=attention)  # type: ignore[attr-defined]


def by_context_graphs(
    engine: object, forward: object, monkeypatch: pytest.MonkeyPatch, kernel: str = "by-context",
    kv_caches: list | None = None,  # type: ignore[type-arg]
) -> DecodeGraphs:  # fmt: skip
    """Graphs made as on a Hopper GPU, where TMA reads the cache (the CPU has no TMA)."""
    ops = triton_ops(engine, kernel)
    pa = importlib.import_module("kernels.triton.paged_attention")
    with monkeypatch.context() as m:
        m.setattr(pa, "tma_supported", lambda q, k: True)
        return graphs_for(engine, forward, ops, kv_caches)


def variants(plan: object) -> set[ContextVariant]:
    return {ContextVariant(plan, True), ContextVariant(plan, False)}


def test_a_batch_size_is_captured_once_per_plan_over_its_context_buckets(engine: object) -> None:
    fwd = engine.runner.forward  # type: ignore[attr-defined]
    assert isinstance(fwd, PipelineForward)
    # the plan per context bucket for decode-only batches: only 4 rows at context 64 pipeline
    assert [fwd.graph_key(4, c) for c in (16, 40, 64, 500)] == [None, PLAN, PLAN, PLAN]
    assert [fwd.graph_key(2, c) for c in (16, 64)] == [None, None]  # nearest bucket: 1 decode
    graphs = graphs_for(engine, fwd)
    assert set(graphs.forwards) == {(1, None), (2, None), (4, None), (4, PLAN)}
    # the dense model (and any forward without plans): one graph per batch size
    dense = graphs_for(engine, engine.model)  # type: ignore[attr-defined]
    assert isinstance(dense.variants, OneForward)
    assert set(dense.forwards) == {(b, None) for b in BUCKETS}


def test_a_loaded_batch_picks_the_graph_of_its_real_context(engine: object) -> None:
    graphs = graphs_for(engine, engine.runner.forward)  # type: ignore[attr-defined]
    lens = torch.tensor([60, 70, 50], dtype=torch.int32)
    assert graphs.key_for(3, lens) == (4, PLAN)  # 3 rows pad to the 4-row graph
    assert graphs.key_for(3, torch.tensor([10, 12, 20], dtype=torch.int32)) == (4, None)
    assert graphs.key_for(2, lens[:2]) == (2, None)
    # padding rows (context 1) past n do not pull the mean down
    padded = torch.tensor([60, 70, 50, 1], dtype=torch.int32)
    assert graphs.key_for(3, padded) == (4, PLAN)


def test_the_plan_graph_runs_the_plan_and_matches_dense(engine: object) -> None:
    """What capture records for each key, run eagerly on the static buffers: the (4, plan) key
    goes through the plan's executor (the 2 + 2 nano-batches) and gives the dense logits."""
    fwd = engine.runner.forward  # type: ignore[attr-defined]
    ex = fwd.executor_for(4, 4, 64.0)
    assert ex is not None and ex.plan.name == "decode-plan"
    graphs = graphs_for(engine, fwd)
    calls: list[int] = []
    original = ex.forward

    def counting(ids: torch.Tensor, ctx: object) -> torch.Tensor:  # a spy on the real executor
        calls.append(int(ids.shape[0]))
        return original(ids, ctx)  # type: ignore[arg-type]

    ex.forward = counting  # type: ignore[method-assign]
    try:
        g = torch.Generator().manual_seed(0)
        graphs.input_ids[:4] = torch.randint(0, 100, (4,), generator=g)
        graphs.positions[:4] = torch.tensor([3, 5, 7, 2])
        graphs.context_lens[:4] = graphs.positions[:4].to(torch.int32) + 1
        with torch.inference_mode():
            dense = graphs.forward((4, None))
            assert calls == []
            planned = graphs.forward((4, PLAN))
        assert calls == [4]
    finally:
        ex.forward = original  # type: ignore[method-assign]
    torch.testing.assert_close(planned, dense, rtol=1e-4, atol=1e-4)


def test_replays_are_folded_per_plan_over_batch_sizes(engine: object) -> None:
    graphs = graphs_for(engine, engine.runner.forward)  # type: ignore[attr-defined]
    assert graphs.replays_by_plan() == {}
    graphs.replays.update({(4, PLAN): 3, (4, None): 2, (2, None): 5})
    assert graphs.replays_by_plan() == {"dense": 7, PLAN: 3}


def test_by_context_captures_every_bucket_and_plan_once_per_context_shape(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    fwd = engine.runner.forward  # type: ignore[attr-defined]
    graphs = by_context_graphs(engine, fwd, monkeypatch)
    assert graphs.by_context
    expected = {(b, v) for b in BUCKETS for v in variants(None)} | {(4, v) for v in variants(PLAN)}
    assert set(graphs.forwards) == expected  # twice today's (1, 2, 4 dense; 4 with the plan)
    dense = by_context_graphs(engine, engine.model, monkeypatch)  # type: ignore[attr-defined]
    assert set(dense.forwards) == {(b, v) for b in BUCKETS for v in variants(None)}
    # every other choice captures as before: one graph per (batch size, plan)
    for kernel in ("auto", "gather", "tma-items"):
        other = by_context_graphs(engine, fwd, monkeypatch, kernel)
        assert not other.by_context
        assert set(other.forwards) == {(1, None), (2, None), (4, None), (4, PLAN)}
    # "by-context" over a float8 cache runs "auto" in every batch: one graph each too
    fp8 = [(k.to(torch.float8_e4m3fn), v.to(torch.float8_e4m3fn))
           for k, v in engine.runner.kv_caches]  # type: ignore[attr-defined]  # fmt: skip
    fp8_graphs = by_context_graphs(engine, fwd, monkeypatch, kv_caches=fp8)
    assert set(fp8_graphs.forwards) == {(1, None), (2, None), (4, None), (4, PLAN)}
    # without TMA (before Hopper) both cases run the gather kernel: no second graph
    assert set(graphs_for(engine, fwd, triton_ops(engine, "by-context")).forwards) == set(
        fp8_graphs.forwards
    )


class ModeSpy:
    """The engine's decode variants, recording the mode each loaded batch asks the guard for."""

    def __init__(self, inner: object) -> None:
        self.inner, self.modes = inner, []  # type: ignore[var-annotated]

    def graph_variants(self, decodes: int) -> object:
        return self.inner.graph_variants(decodes)  # type: ignore[attr-defined]

    def graph_key(self, decodes: int, context: float) -> object:
        return self.inner.graph_key(decodes, context)  # type: ignore[attr-defined]

    def decode_turn(self, decodes: int, context: float, mode: str = "graph") -> None:
        self.modes.append(mode)

    def timed(self, turn: object, run: object) -> object:
        return run()  # type: ignore[operator]


def three_rows(lens: tuple[int, int, int], scratch: int, block_size: int) -> DecodeInputs:
    return DecodeInputs(
        input_ids=torch.tensor([5, 6, 7]), positions=torch.tensor(lens) - 1,
        slot_mapping=torch.full((3,), scratch * block_size),
        context_lens=torch.tensor(lens, dtype=torch.int32),
        block_tables=torch.full((3, 5), scratch, dtype=torch.int32),
    )  # fmt: skip


def test_the_capture_log_names_what_each_graph_runs() -> None:
    """The guard's dense graphs beside a plan's are the dense forward, not a second plan; a
    by-context pair of variants is its plan once."""
    guarded = [(1, None), (2, None), (4, None), (4, PLAN)]
    assert (
        capture_summary(guarded)
        == f"dense for batch sizes [1, 2, 4]; plan {PLAN} for batch sizes [4]"
    )
    variants = [(4, ContextVariant(PLAN, True)), (4, ContextVariant(PLAN, False)),
                (2, ContextVariant(None, True)), (2, ContextVariant(None, False))]  # fmt: skip
    assert (
        capture_summary(variants) == f"dense for batch sizes [2]; plan {PLAN} for batch sizes [4]"
    )
    assert capture_summary([]) == "none"


def test_a_loaded_batch_tells_the_guard_which_graph_kind_it_replays(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The plan guard pairs samples of one kind only: under "by-context" a load names the
    variant it picked (uniform or ragged contexts), otherwise just "graph"."""
    import runtime.cuda_graph as cuda_graph

    monkeypatch.setattr(cuda_graph, "pinned", lambda t: t)  # no pinned memory without CUDA
    r = engine.runner  # type: ignore[attr-defined]
    spy = ModeSpy(r.forward)
    graphs = by_context_graphs(engine, spy, monkeypatch)
    for lens in ((60, 63, 57), (60, 70, 50)):
        graphs.load(three_rows(lens, r.scratch_block, r.blocks.block_size))
    assert spy.modes == ["graph, uniform contexts", "graph, ragged contexts"]
    assert graphs.loaded == (4, ContextVariant(PLAN, False))
    plain, spy.modes = graphs_for(engine, spy), []
    plain.load(three_rows((60, 63, 57), r.scratch_block, r.blocks.block_size))
    assert spy.modes == ["graph"] and plain.loaded == (4, PLAN)


def test_by_context_picks_the_variant_of_the_loaded_rows_real_contexts(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    graphs = by_context_graphs(engine, engine.runner.forward, monkeypatch)  # type: ignore[attr-defined]

    def key(*lens: int) -> object:
        return graphs.key_for(3, torch.tensor(lens, dtype=torch.int32))

    # the default ratio 1.05. Mean context 60: the plan; 63 / 60 uniform, 70 / 60 and 90 / 60
    # ragged
    assert key(60, 63, 57) == (4, ContextVariant(PLAN, True))
    assert key(60, 70, 50) == (4, ContextVariant(PLAN, False))
    assert key(20, 70, 90) == (4, ContextVariant(PLAN, False))
    # mean context 14: dense; 20 / 14 ragged, 13 / 12.3 (1.054) ragged, 12 / 12 uniform
    assert key(10, 12, 20) == (4, ContextVariant(None, False))
    assert key(12, 12, 13) == (4, ContextVariant(None, False))
    assert key(12, 12, 12) == (4, ContextVariant(None, True))
    # padding rows (context 1) past n count neither for the plan nor for the shape
    assert key(60, 63, 57, 1) == (4, ContextVariant(PLAN, True))
    assert graphs.key_for(1, torch.tensor([7, 1], dtype=torch.int32)) == (
        1, ContextVariant(None, True),
    )  # fmt: skip
    # replays are counted per variant
    graphs.replays.update({(4, ContextVariant(None, False)): 2, (2, ContextVariant(None, True)): 3,
                           (4, ContextVariant(PLAN, True)): 1})  # fmt: skip
    assert graphs.replays_by_plan() == {
        "dense, ragged contexts": 2, "dense, uniform contexts": 3,
        f"{PLAN}, uniform contexts": 1,
    }  # fmt: skip


def test_by_context_variant_pick_classes_by_the_choices_ratio(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The loaded rows' variant under by-context@1.02 against by-context@1.25: the ratio comes
    from the attention backend's decode choice (what the engine's config builds), exactly."""
    fwd = engine.runner.forward  # type: ignore[attr-defined]
    assert by_context_graphs(engine, fwd, monkeypatch).uniform_ratio == Fraction(21, 20)
    loose = by_context_graphs(engine, fwd, monkeypatch, "by-context@1.25")
    tight = by_context_graphs(engine, fwd, monkeypatch, "by-context@1.02")
    assert (loose.uniform_ratio, tight.uniform_ratio) == (Fraction(5, 4), Fraction(51, 50))
    assert set(tight.forwards) == set(loose.forwards)  # the same two variants per graph
    assert by_context_graphs(engine, fwd, monkeypatch, "auto").uniform_ratio is None

    def key(graphs: DecodeGraphs, *lens: int) -> object:
        return graphs.key_for(3, torch.tensor(lens, dtype=torch.int32))

    # 70 / 60 = 1.17 and 13 / 12.3 = 1.05: uniform at 1.25, ragged at 1.02
    assert key(loose, 60, 70, 50) == (4, ContextVariant(PLAN, True))
    assert key(tight, 60, 70, 50) == (4, ContextVariant(PLAN, False))
    assert key(loose, 12, 12, 13) == (4, ContextVariant(None, True))
    assert key(tight, 12, 12, 13) == (4, ContextVariant(None, False))
    # exactly 1.02 (51 x 3 = 1.02 x 150) is uniform; one token more is not
    assert key(tight, 51, 50, 49) == (4, ContextVariant(PLAN, True))
    assert key(tight, 52, 50, 49) == (4, ContextVariant(PLAN, False))
    # padding rows (context 1) past n do not count at either ratio
    assert tight.key_for(3, torch.tensor([51, 50, 49, 1], dtype=torch.int32)) == (
        4, ContextVariant(PLAN, True),
    )  # fmt: skip


@pytest.mark.skipif(  # a GPU machine compiles Triton for the device: no host pointers
    os.environ.get("TRITON_INTERPRET") != "1", reason="runs Triton on CPU tensors: interpreter only"
)
def test_by_context_graph_forwards_run_their_case_and_match_auto(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What capture records for the two variants of a dense batch size, run eagerly through the
    Triton backend on the interpreter: each layer's decode attention picks as its variant says
    (whatever the static buffers' lengths), and the logits are auto's (the CPU runs the gather
    kernel for both: no TMA)."""
    model = engine.model  # type: ignore[attr-defined]
    graphs = by_context_graphs(engine, model, monkeypatch)
    auto = graphs_for(engine, model, triton_ops(engine, "auto"))
    pa = importlib.import_module("kernels.triton.paged_attention")
    seen: list[bool | None] = []
    pick = pa.whole_gpu_kernel
    monkeypatch.setattr(pa, "whole_gpu_kernel",
                        lambda c, d, t, u=None: seen.append(u) or pick(c, d, t, u))  # fmt: skip
    ids = torch.randint(0, 100, (4,), generator=torch.Generator().manual_seed(1))
    pos = torch.tensor([3, 5, 7, 30])
    for buffers in (graphs, auto):
        buffers.input_ids[:4] = ids
        buffers.positions[:4] = pos
        buffers.context_lens[:4] = (pos + 1).to(torch.int32)
        buffers.block_tables[:4, :2] = torch.tensor([[1, 2], [3, 4], [5, 6], [7, 8]])
        buffers.slot_mapping[:4] = buffers.block_tables[:4, 0].long() * 16 + pos
    layers = model.cfg.num_layers
    with torch.inference_mode():
        expected = auto.forward((4, None))
        assert seen == [None] * layers
        for uniform in (True, False):
            seen.clear()
            logits = graphs.forward((4, ContextVariant(None, uniform)))
            assert seen == [uniform] * layers
            torch.testing.assert_close(logits, expected, rtol=1e-5, atol=1e-5)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_every_graph_writes_one_logits_buffer_on_the_gpu(tiny_llama: str, tmp_path: Path) -> None:
    """Captured on CUDA: every (batch size, plan) graph writes the first rows of one logits
    buffer (not an output per graph: 9.2 GB over the batch sizes up to 1,024 with a 128k
    vocabulary, and as much again per extra plan, which ran an fp8 engine with three plans out
    of memory on the H200); replays of (4, dense) and (4, plan) each leave their own logits
    there, equal, and the plans' executors share their plain streams."""
    cfg = ModelConfig.from_hf(read_json(Path(tiny_llama) / "config.json"))
    sms = torch.cuda.get_device_properties(0).multi_processor_count  # plain streams, no green
    path = long_context_set(signature_of(cfg, 4), sms).save(tmp_path / "set")
    eng = LLM(tiny_llama, dtype="float32", device="cuda", pipeline=str(path),
              max_num_seqs=4).engine  # fmt: skip
    graphs = eng.runner.graphs
    assert graphs is not None and graphs.logits_buf is not None
    assert {(4, None), (4, PLAN), (2, None)} <= set(graphs.graphs)
    ptr = graphs.logits_buf.data_ptr()
    assert {t.data_ptr() for t in graphs.logits.values()} == {ptr}
    assert graphs.logits_buf.shape == (4, cfg.vocab_size)
    n, bs = 3, eng.runner.blocks.block_size  # type: ignore[attr-defined]
    # each row its own KV block (a shared slot would make the result depend on which row's
    # key store lands last, which differs between the dense graph and the nano-batches)
    blocks = [b for b in range(1, 8) if b != eng.runner.scratch_block][:n]  # type: ignore[attr-defined]
    pos = torch.tensor([3, 5, 7])
    batch = DecodeInputs(
        input_ids=torch.tensor([5, 9, 11]), positions=pos,
        slot_mapping=torch.tensor(blocks) * bs + pos, context_lens=(pos + 1).to(torch.int32),
        block_tables=torch.tensor(blocks, dtype=torch.int32)[:, None],
    )  # fmt: skip
    out = {}
    with torch.inference_mode():
        for key in ((4, None), (4, PLAN)):
            graphs.load(batch)
            graphs.loaded = key  # the mean context picks dense; replay both graphs
            out[key] = graphs.replay(n).clone()
    assert out[(4, None)].shape == (n, cfg.vocab_size)
    assert graphs.replays[(4, None)] >= 1 and graphs.replays[(4, PLAN)] == 1
    assert graphs.replays_by_plan()[PLAN] == 1
    torch.testing.assert_close(out[(4, PLAN)], out[(4, None)], rtol=1e-4, atol=1e-4)
    other = PipelineForward(str(path), eng.model, eng.ops)  # type: ignore[attr-defined]
    fwd = eng.runner.forward
    assert isinstance(fwd, PipelineForward)
    mine, theirs = fwd.executors[PLAN].units, other.executors[PLAN].units
    assert mine.all_streams() and mine.all_streams() == theirs.all_streams()
    eng.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_longest_first_decode_order_gives_the_same_tokens_under_cuda_graphs(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NANOLANG_KV_ORDER=longest (decode work items longest context first, the order refilled
    at each graph replay) only reorders work: greedy tokens equal batch order's, and the
    graphs' order buffers were filled."""
    from runtime import SamplingParams

    prompts = [list(range(3, 3 + n)) for n in (5, 90, 17, 40, 3, 64)]  # ragged contexts
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    runs = {}
    for order in ("batch", "longest"):
        monkeypatch.setenv("NANOLANG_KV_ORDER", order)
        llm = LLM(tiny_llama, dtype="float32", device="cuda", max_num_seqs=8)
        runs[order] = [o.token_ids for o in llm.generate(prompts, params)]
        backend = llm.engine.ops.paged_attention  # type: ignore[attr-defined]
        if backend.name != "triton":
            pytest.skip(f"the attention backend is {backend.name}: the order is the Triton one's")
        assert bool(backend._graph_orders) == (order == "longest")
        llm.engine.shutdown()
    assert runs["longest"] == runs["batch"]


def batch_with_patch(scratch: int, block_size: int) -> DecodeInputs:
    """Three rows of ragged contexts, two of which wait for the previous iteration's tokens."""
    lens = torch.tensor([9, 33, 17], dtype=torch.int32)
    tables = torch.tensor([[1, 2, 3], [4, 5, 6], [7, 8, 0]], dtype=torch.int32)
    pos = lens.to(torch.int64) - 1
    return DecodeInputs(
        input_ids=torch.tensor([5, 0, 0]), positions=pos,
        slot_mapping=tables[torch.arange(3), pos // block_size].to(torch.int64) * block_size
        + pos % block_size,
        context_lens=lens, block_tables=tables, patch_rows=[2, 1], patch_src=[0, 3],
    )  # fmt: skip


@pytest.mark.parametrize("copies", ["one", "separate"])
def test_a_loaded_batch_fills_what_the_graph_reads(
    engine: object, copies: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One copy of the rows' metadata (and one of their block tables) leaves in the static
    buffers what the copies per tensor left: the rows, the patch's indices, and padding rows
    (to the bucket) that read and write the scratch block."""
    monkeypatch.setenv("NANOLANG_DECODE_COPIES", copies)
    r = engine.runner  # type: ignore[attr-defined]
    graphs = graphs_for(engine, engine.model)  # type: ignore[attr-defined]
    assert graphs.separate_copies == (copies == "separate")
    scratch, bs = r.scratch_block, r.blocks.block_size
    batch = batch_with_patch(scratch, bs)
    ids = graphs.load(batch)
    assert graphs.loaded == (4, None) and ids.data_ptr() == graphs.input_ids.data_ptr()
    assert ids.tolist() == [5, 0, 0]
    assert graphs.positions[:3].tolist() == batch.positions.tolist()
    assert graphs.slot_mapping[:4].tolist() == [*batch.slot_mapping.tolist(), scratch * bs]
    assert graphs.context_lens[:4].tolist() == [9, 33, 17, 1]
    assert graphs.block_tables[:3, :3].tolist() == batch.block_tables.tolist()
    assert graphs.block_tables[3, 0] == scratch
    dst, src = graphs.patch_indices(2)
    assert dst.tolist() == [2, 1] and src.tolist() == [0, 3]
    assert graphs.metas[4].context_lens.data_ptr() == graphs.context_lens.data_ptr()
    base = graphs.staging.buffer.data_ptr()  # one allocation, each field 256 bytes aligned in it
    for t in (graphs.input_ids, graphs.positions, graphs.slot_mapping, graphs.context_lens, dst):
        assert (t.data_ptr() - base) % 256 == 0 and t.is_contiguous()
        assert 0 <= t.data_ptr() - base < graphs.staging.nbytes
    assert graphs.context_lens.shape == (max(BUCKETS),)
    # a smaller batch next: its padding rows are the scratch block's again
    two = DecodeInputs(batch.input_ids[:2], batch.positions[:2], batch.slot_mapping[:2],
                       batch.context_lens[:2], batch.block_tables[:2, :2])  # fmt: skip
    graphs.load(two)
    assert graphs.loaded == (2, None)
    assert graphs.context_lens[:2].tolist() == [9, 33]
    assert graphs.block_tables[:2, :2].tolist() == [[1, 2], [4, 5]]


def test_one_copy_and_separate_copies_give_the_same_logits(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The forward a graph captures, run eagerly over each way of loading the batch."""
    r = engine.runner  # type: ignore[attr-defined]
    logits = {}
    for copies in ("one", "separate"):
        monkeypatch.setenv("NANOLANG_DECODE_COPIES", copies)
        graphs = graphs_for(engine, engine.model)  # type: ignore[attr-defined]
        graphs.load(batch_with_patch(r.scratch_block, r.blocks.block_size))
        with torch.inference_mode():
            logits[copies] = graphs.forward((4, None))[:3].clone()
    assert torch.equal(logits["one"], logits["separate"])


def test_a_bad_decode_copies_value_is_refused(
    engine: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("NANOLANG_DECODE_COPIES", "two")
    with pytest.raises(ValueError, match="NANOLANG_DECODE_COPIES must be 'one' or 'separate'"):
        graphs_for(engine, engine.model)  # type: ignore[attr-defined]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_one_copy_staging_gives_the_same_tokens_under_cuda_graphs(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NANOLANG_DECODE_COPIES=one (the rows' metadata in one copy, the patch's indices with
    it) against a copy per tensor: the same greedy tokens, in bf16 (its logits not widened
    for the argmax) and float32, with asynchronous scheduling patching pending tokens."""
    from runtime import SamplingParams

    prompts = [list(range(3, 3 + n)) for n in (5, 90, 17, 40, 3, 64)]
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    for dtype in ("float32", "bfloat16"):
        runs = {}
        for copies in ("separate", "one"):
            monkeypatch.setenv("NANOLANG_DECODE_COPIES", copies)
            llm = LLM(tiny_llama, dtype=dtype, device="cuda", max_num_seqs=8)
            assert llm.engine.runner.graphs is not None  # type: ignore[attr-defined]
            runs[copies] = [o.token_ids for o in llm.generate(prompts, params)]
            # the last iteration read back was a replayed decode step, timed on the device
            timings = llm.engine.runner.timings  # type: ignore[attr-defined]
            assert 0 < timings.graph_s <= timings.gpu_s
            llm.engine.shutdown()
        assert runs["one"] == runs["separate"], dtype


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_pdl_gives_the_same_tokens_under_cuda_graphs(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """NANOLANG_PDL=1 (the small Triton kernels launched early, each waiting for the one
    before): the same greedy tokens as without, decode steps replayed from CUDA graphs."""
    from kernels.triton import pdl
    from runtime import SamplingParams

    prompts = [list(range(3, 3 + n)) for n in (5, 90, 17, 40, 3, 64)]
    params = SamplingParams(max_tokens=24, temperature=0.0, ignore_eos=True)
    runs = {}
    for flag in ("0", "1"):
        monkeypatch.setenv("NANOLANG_PDL", flag)
        pdl.enabled.cache_clear()
        llm = LLM(tiny_llama, dtype="bfloat16", device="cuda", max_num_seqs=8)
        runs[flag] = [o.token_ids for o in llm.generate(prompts, params)]
        llm.engine.shutdown()
    pdl.enabled.cache_clear()
    assert runs["1"] == runs["0"]
