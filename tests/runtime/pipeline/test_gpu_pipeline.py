"""The pipeline on a CUDA GPU: green-context partitions, multi-stream CUDA graphs, and the same
greedy tokens as the dense CPU path in float32; bf16 hidden states close to the dense forward."""

from __future__ import annotations

import pytest
import torch

from runtime import LLM, SamplingParams
from runtime.pipeline.plans import PLAN_DIR

PARTITIONED = str(PLAN_DIR / "llama-3-8b-h200-decode-partitioned.json")

pytestmark = [
    pytest.mark.gpu,
    pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU"),
]

PROMPTS = [[5, 17, 99, 23, 41], [7] * 13, list(range(30, 70)), [200, 3, 150] * 30, [9, 8]]


def greedy(n: int = 12) -> SamplingParams:
    return SamplingParams(max_tokens=n, temperature=0.0, ignore_eos=True)


@pytest.fixture(scope="module")
def cpu_outputs(tiny_llama: str) -> list:
    return LLM(tiny_llama, dtype="float32", device="cpu").generate(PROMPTS, greedy())


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "cuda-graphs"])
@pytest.mark.parametrize(
    "spec", ["default", "default:sequential", PARTITIONED], ids=["default", "seq", "partitioned"]
)
def test_pipeline_matches_cpu_in_float32(
    tiny_llama: str, cpu_outputs: list, eager: bool, spec: str
) -> None:
    llm = LLM(tiny_llama, dtype="float32", device="cuda", enforce_eager=eager, max_num_seqs=8,
              pipeline=spec)  # fmt: skip
    ex = llm.engine.runner.forward.executor_for(4, 4)  # type: ignore[attr-defined]
    if spec == PARTITIONED:  # two disjoint green contexts
        sms = [n for n in ex.units.sms.values() if n is not None]
        total = torch.cuda.get_device_properties(0).multi_processor_count
        assert len(sms) == 2 and sum(sms) <= total
    outs = llm.generate(PROMPTS, greedy())
    assert [o.token_ids for o in outs] == [o.token_ids for o in cpu_outputs]


def test_pipeline_bf16_close_to_dense(tiny_llama: str) -> None:
    from runtime.pipeline import PipelineExecutor, default_plans

    llm = LLM(tiny_llama, dtype="bfloat16", device="cuda", enforce_eager=True, max_num_seqs=8)
    dense = llm.generate(PROMPTS, greedy(6))
    engine = llm.engine
    ex = PipelineExecutor(default_plans()["decode"], engine.model, engine.ops)
    engine.runner.forward = ex.forward
    piped = llm.generate(PROMPTS, greedy(6))
    same = sum(a.token_ids == b.token_ids for a, b in zip(piped, dense, strict=True))
    assert same >= len(PROMPTS) - 1  # bf16: reduction order may flip a near-tie


@pytest.mark.parametrize("eager", [True, False], ids=["eager", "cuda-graphs"])
def test_a_carve_plan_matches_cpu_in_float32(
    tiny_llama: str, cpu_outputs: list, eager: bool, tmp_path
) -> None:
    """Attention confined to 16 SMs beside GEMMs aimed at the rest (cuBLASLt's SM count target,
    where cuBLASLt is the linear): the CPU's greedy tokens."""
    from kernels.attention.triton_attention import CONFINED_DECODE, TritonAttention
    from runtime.pipeline import carve_plan
    from runtime.pipeline.plan import Unit

    sms = torch.cuda.get_device_properties(0).multi_processor_count
    path = tmp_path / "carve.json"
    path.write_text(carve_plan("carve", [4, 4], 16, sms).to_json())
    llm = LLM(tiny_llama, dtype="float32", device="cuda", enforce_eager=eager, max_num_seqs=8,
              pipeline=str(path))  # fmt: skip
    ex = llm.engine.runner.forward.executor_for(4, 4)  # type: ignore[attr-defined]
    rest = ex.ops_for[Unit(0, 0, sms - 16)]
    if llm.engine.ops.backends["linear"] == "cublaslt":
        assert rest.linear is not llm.engine.ops.linear  # aimed at the other SMs
    att = ex.ops_for[Unit(0, 1, 16)].paged_attention
    if isinstance(att, TritonAttention):  # one program per SM on its 16
        assert (att.num_sms, att.decode_config) == (16, CONFINED_DECODE)
    outs = llm.generate(PROMPTS, greedy())
    assert [o.token_ids for o in outs] == [o.token_ids for o in cpu_outputs]
