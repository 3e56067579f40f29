"""The engine with the opt-in "by-context" decode attention (kernels.decode_choice): the same greedy
tokens as "auto" on decode batches of equal contexts and of ragged ones, each batch's decode
attention picked by its own contexts, by the uniform-context ratio its config names
(``decode_kernel="by-context@RATIO"``). On the CPU through the Triton backend on its interpreter
(the CPU registry offers only the torch backend, which ignores the choice; there both cases run
the gather kernel: no TMA); on a GPU under CUDA graphs, against "auto" and the torch reference.
"""

from __future__ import annotations

import dataclasses
import importlib
import os
from fractions import Fraction

import pytest
import torch

from kernels import DecodeChoice
from runtime import LLM, SamplingParams
from runtime.config import EngineConfig
from runtime.cuda_graph import ContextVariant
from tests.runtime.greedy_agreement import agreeing_prefixes

# four 20-token prompts: every decode batch's contexts are equal
UNIFORM = [[5] * 20, [6] * 20, [7, 8] * 10, list(range(30, 50))]
# 3, 40, 12 and 24 tokens: max / mean context about 2 in every decode batch
RAGGED = [[5, 17, 99], list(range(30, 70)), [9] * 12, [200, 3, 150] * 8]
# 20, 20, 20 and 24 tokens: max / mean context 25 / 22 = 1.14 on the first decode, 31 / 28 = 1.11
# on the seventh: uniform at 1.25, ragged at 1.02 (and at the default 1.05)
NEAR_UNIFORM = [[5] * 20, [6] * 20, [7, 8] * 10, list(range(30, 54))]


def greedy(n: int = 8) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True, logprobs=True)


def _triton_on_cpu(llm: LLM) -> None:
    """The engine's attention as the Triton backend with its configured decode choice."""
    from kernels.attention.triton_attention import TritonAttention

    engine = llm.engine
    choice = engine.config.decode_choice()
    attention = TritonAttention(torch.device("cpu"), choice=choice)
    engine.ops = dataclasses.replace(engine.ops, paged_attention=attention)
    engine.runner.ops = engine.ops


# CPU tensors through Triton kernels: only Triton's interpreter runs those (a GPU machine compiles
# them for the device and refuses host pointers); the GPU test below covers the device
on_the_interpreter = pytest.mark.skipif(
    os.environ.get("TRITON_INTERPRET") != "1", reason="runs Triton on CPU tensors: interpreter only"
)


@pytest.fixture
def seen(monkeypatch: pytest.MonkeyPatch) -> list[bool | None]:
    """What each whole-GPU decode kernel pick was told of the batch's contexts (uniform, ragged;
    None: not by-context), in order."""
    pytest.importorskip("triton")
    pa = importlib.import_module("kernels.triton.paged_attention")
    picks: list[bool | None] = []
    pick = pa.whole_gpu_kernel
    monkeypatch.setattr(pa, "whole_gpu_kernel",
                        lambda c, d, t, u=None: picks.append(u) or pick(c, d, t, u))  # fmt: skip
    return picks


@on_the_interpreter
def test_by_context_gives_autos_tokens_on_the_cpu(tiny_llama: str, seen: list[bool | None]) -> None:
    kw = {"dtype": "float32", "device": "cpu", "max_num_seqs": 8}
    reference = LLM(tiny_llama, decode_kernel="by-context", **kw)  # torch: the choice ignored
    assert reference.engine.ops.backends["paged_attention"] == "torch"
    engines = {k: LLM(tiny_llama, decode_kernel=k, **kw) for k in ("by-context", "auto")}
    for llm in engines.values():
        _triton_on_cpu(llm)
    for prompts, uniform in ((UNIFORM, True), (RAGGED, False)):
        tokens = {}
        for kernel, llm in engines.items():
            seen.clear()
            tokens[kernel] = [o.token_ids for o in llm.generate(prompts, greedy())]
            # every layer of every decode iteration decided by the batch's own contexts
            assert seen and set(seen) == ({uniform} if kernel == "by-context" else {None})
        assert tokens["by-context"] == tokens["auto"]
        assert tokens["auto"] == [o.token_ids for o in reference.generate(prompts, greedy())]


def test_the_engine_config_carries_the_uniform_ratio_in_its_decode_kernel() -> None:
    config = EngineConfig(decode_kernel="by-context@1.05", fp8_decode_dot="q")
    assert config.decode_choice() == DecodeChoice("by-context", "q", Fraction(21, 20))
    assert config.decode_choice().spec() == "by-context@1.05:q"
    plain = EngineConfig(decode_kernel="by-context").decode_choice()
    assert plain.uniform_ratio == Fraction(21, 20)
    assert EngineConfig().decode_choice() == DecodeChoice("by-context", "fp16", Fraction(21, 20))
    for bad, why in (("gather@1.1", "only by-context"), ("by-context@0.9", "at least 1"),
                     ("by-context@1,1", "not a ratio")):  # fmt: skip
        with pytest.raises(ValueError, match=f"{bad}.*{why}"):
            EngineConfig(decode_kernel=bad)


@on_the_interpreter
def test_the_uniform_ratio_classes_the_same_batches_by_the_engines_choice(
    tiny_llama: str, seen: list[bool | None]
) -> None:
    """Decode batches of near-equal contexts (max / mean 1.11-1.14): uniform under
    by-context@1.25 (its default), ragged under by-context@1.02, and the tokens auto's."""
    kw = {"dtype": "float32", "device": "cpu", "max_num_seqs": 8}
    expected = {"by-context@1.25": {True}, "by-context@1.02": {False}, "auto": {None}}
    tokens = {}
    for kernel, classed in expected.items():
        llm = LLM(tiny_llama, decode_kernel=kernel, **kw)
        _triton_on_cpu(llm)
        seen.clear()
        tokens[kernel] = [o.token_ids for o in llm.generate(NEAR_UNIFORM, greedy())]
        assert seen and set(seen) == classed, kernel  # every layer of every decode iteration
    assert tokens["by-context@1.25"] == tokens["by-context@1.02"] == tokens["auto"]


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_by_context_under_cuda_graphs_follows_auto_and_the_reference(tiny_llama: str) -> None:
    """bf16 under CUDA graphs: uniform batches replay the uniform variant (the TMA kernel on a
    Hopper GPU), ragged ones the ragged variant (the gather kernel); tokens against "auto" and
    the torch reference (a near-tie may flip a bf16 token: log-probabilities are compared up to
    each sequence's first difference)."""
    kw = {"dtype": "bfloat16", "device": "cuda", "max_num_seqs": 8}
    by = LLM(tiny_llama, attention_backend="triton", decode_kernel="by-context", **kw)
    auto = LLM(tiny_llama, attention_backend="triton", decode_kernel="auto", **kw)
    ref = LLM(tiny_llama, attention_backend="torch", **kw)
    graphs = by.engine.runner.graphs
    assert graphs is not None and auto.engine.runner.graphs is not None
    hopper = torch.cuda.get_device_capability()[0] >= 9
    assert graphs.by_context == hopper  # before Hopper both cases run the gather kernel
    assert len(graphs.graphs) == (2 if hopper else 1) * len(auto.engine.runner.graphs.graphs)
    for prompts, uniform in ((UNIFORM, True), (RAGGED, False)):
        before = dict(graphs.replays)
        outs = by.generate(prompts, greedy(12))
        replayed = {k for k, n in graphs.replays.items() if n > before.get(k, 0)}
        assert replayed, "no decode replayed from a graph"
        if hopper:
            assert {k[1] for k in replayed} == {ContextVariant(None, uniform)}
        for other in (auto.generate(prompts, greedy(12)), ref.generate(prompts, greedy(12))):
            assert agreeing_prefixes(other, outs, 6, uniform) >= 3
    for llm in (by, auto, ref):
        llm.shutdown()


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_the_engines_graphs_pick_the_variant_by_the_configured_ratio(tiny_llama: str) -> None:
    """bf16 under CUDA graphs on a Hopper GPU: the near-uniform batches replay the uniform
    variant under by-context@1.25 and the ragged one under by-context@1.02 (the ratio reaches
    the graph runner from the engine's config), with auto's tokens up to near-ties."""
    if torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("before Hopper both cases run the gather kernel: one graph per batch size")
    kw = {"dtype": "bfloat16", "device": "cuda", "max_num_seqs": 8, "attention_backend": "triton"}
    auto = LLM(tiny_llama, decode_kernel="auto", **kw)  # by-context is the default
    reference = [o.token_ids for o in auto.generate(NEAR_UNIFORM, greedy(8))]
    for kernel, uniform in (("by-context@1.25", True), ("by-context@1.02", False)):
        llm = LLM(tiny_llama, decode_kernel=kernel, **kw)
        graphs = llm.engine.runner.graphs
        assert graphs is not None
        assert graphs.uniform_ratio == llm.engine.config.decode_choice().uniform_ratio
        before = dict(graphs.replays)
        outs = [o.token_ids for o in llm.generate(NEAR_UNIFORM, greedy(8))]
        replayed = {k[1] for k, n in graphs.replays.items() if n > before.get(k, 0)}
        assert replayed == {ContextVariant(None, uniform)}, kernel
        assert sum(a[:4] == b[:4] for a, b in zip(outs, reference, strict=True)) >= 3
        llm.shutdown()
    auto.shutdown()
