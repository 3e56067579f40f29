"""The engine with the opt-in "by-context" decode attention (kernels.decode_choice): the same greedy
tokens as "auto" on decode batches of equal contexts and of ragged ones, each batch's decode
attention picked by its own contexts. On the CPU through the Triton backend on its interpreter
(the CPU registry offers only the torch backend, which ignores the choice; there both cases run
the gather kernel: no TMA); on a GPU under CUDA graphs, against "auto" and the torch reference.
"""

from __future__ import annotations

import dataclasses
import importlib
import os

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.cuda_graph import ContextVariant

# four 20-token prompts: every decode batch's contexts are equal
UNIFORM = [[5] * 20, [6] * 20, [7, 8] * 10, list(range(30, 50))]
# 3, 40, 12 and 24 tokens: max / mean context about 2 in every decode batch
RAGGED = [[5, 17, 99], list(range(30, 70)), [9] * 12, [200, 3, 150] * 8]


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


@on_the_interpreter
def test_by_context_gives_autos_tokens_on_the_cpu(
    tiny_llama: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("triton")
    pa = importlib.import_module("kernels.triton.paged_attention")
    seen: list[bool | None] = []
    pick = pa.whole_gpu_kernel
    monkeypatch.setattr(pa, "whole_gpu_kernel",
                        lambda c, d, t, u=None: seen.append(u) or pick(c, d, t, u))  # fmt: skip
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

@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_by_context_under_cuda_graphs_follows_auto_and_the_reference(tiny_llama: str) -> None:
    """bf16 under CUDA graphs: uniform batches replay the uniform variant (the TMA kernel on a
    Hopper GPU), ragged ones the ragged variant (the gather kernel); tokens against "auto" and
    the torch reference (a near-tie may flip a bf16 token: log-probabilities are compared up to
    each sequence's first difference)."""
    kw = {"dtype": "bfloat16", "device": "cuda", "max_num_seqs": 8}
    by = LLM(tiny_llama, attention_backend="triton", decode_kernel="by-context", **kw)
    auto = LLM(tiny_llama, attention_backend="triton", **kw)
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
            agreeing = 0
            for r, o in zip(other, outs, strict=True):
                pairs = zip(r.token_ids, o.token_ids, strict=True)
                same = next((i for i, (a, b) in enumerate(pairs) if a != b), len(r.token_ids))
                agreeing += same >= 6
                assert r.logprobs is not None and o.logprobs is not None
                for i in range(min(same + 1, len(r.token_ids))):
                    assert abs(r.logprobs[i] - o.logprobs[i]) < 0.1, (uniform, i)
            assert agreeing >= 3
    for llm in (by, auto, ref):
        llm.shutdown()
