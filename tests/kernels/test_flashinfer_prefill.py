"""The "flashinfer-prefill" backend: Triton's decode rows, FlashInfer's prefill for the rest.

On the CPU, the module is loaded over a stand-in ``flashinfer`` whose batch-prefill wrapper keeps
its plan and computes a run from the planned pages alone (the reference's attention per
sequence), so the routing, the plan's rows and pages and the output's assembly are checked
without FlashInfer; the Triton side runs in Triton's interpreter or is a recording stand-in.
On a GPU with flashinfer: mixed batches (16-bit and float8 caches) against the reference, and an
engine's greedy tokens against the Triton backend's.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
import types
from collections.abc import Callable
from dataclasses import dataclass, field
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest
import torch
from kernel_batches import PagedBatch, make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device

from kernels import reference
from kernels.decode_choice import DecodeChoice
from kernels.metadata import AttentionMetadata

ROOT = Path(__file__).resolve().parents[2]
FP8 = torch.float8_e4m3fn
CHOICE = DecodeChoice("by-context", "q", Fraction(11, 10))
# (q_lens, ctx_lens, num_decode): decodes first, then chunks with prior context and a prompt
MIXED = ([1, 1, 1, 9, 5, 12], [40, 7, 20, 30, 5, 12], 3)
DECODES = ([1] * 4, [40, 7, 20, 33], 4)
HEADS = (4, 2, 64)  # a head dim FlashInfer runs, small enough for the interpreter
SCALE = 64**-0.5


class PrefillStandIn:
    """FlashInfer's batch-prefill wrapper in torch: keeps each plan and computes a run from the
    planned query rows and pages alone (a wrong plan gives a wrong output)."""

    def __init__(self, workspace: torch.Tensor, kv_layout: str) -> None:
        assert kv_layout == "NHD"
        self.plans: list[dict[str, Any]] = []
        self.runs: list[dict[str, Any]] = []

    def plan(
        self, qo_indptr: torch.Tensor, kv_indptr: torch.Tensor, kv_indices: torch.Tensor,
        last_len: torch.Tensor, num_qo_heads: int, num_kv_heads: int, head_dim: int,
        page_size: int, *, causal: bool, q_data_type: torch.dtype, kv_data_type: torch.dtype,
        sm_scale: float,
    ) -> None:  # fmt: skip
        self.plans.append({
            "qo_indptr": qo_indptr.tolist(), "kv_indptr": kv_indptr.tolist(),
            "kv_indices": kv_indices, "last_len": last_len.tolist(), "page_size": page_size,
            "heads": (num_qo_heads, num_kv_heads, head_dim), "causal": causal,
            "dtypes": (q_data_type, kv_data_type), "sm_scale": sm_scale,
        })  # fmt: skip

    def run(
        self, q: torch.Tensor, kv: tuple[torch.Tensor, torch.Tensor], *, out: torch.Tensor,
        k_scale: float | None = None, v_scale: float | None = None,
    ) -> None:  # fmt: skip
        plan, (k_cache, v_cache) = self.plans[-1], kv
        assert plan["causal"] and q.shape == out.shape and q.is_contiguous()
        qo, kv_ptr = plan["qo_indptr"], plan["kv_indptr"]
        for i in range(len(qo) - 1):
            pages = plan["kv_indices"][kv_ptr[i] : kv_ptr[i + 1]].long()
            ctx = (len(pages) - 1) * plan["page_size"] + plan["last_len"][i]
            out[qo[i] : qo[i + 1]] = reference._attend(
                q[qo[i] : qo[i + 1]], k_cache, v_cache, pages, ctx, plan["sm_scale"],
                k_scale or 1.0, v_scale or 1.0,
            )  # fmt: skip
        self.runs.append({"q": q, "out": out, "k_scale": k_scale, "v_scale": v_scale})


def _stand_in(made: list[PrefillStandIn]) -> types.ModuleType:
    """A ``flashinfer`` with the prefill stand-in and no decode wrapper to make."""

    def prefill(workspace: torch.Tensor, kv_layout: str) -> PrefillStandIn:
        made.append(PrefillStandIn(workspace, kv_layout))
        return made[-1]

    def decode(*args: object, **kwargs: object) -> None:
        raise AssertionError("the decode rows are Triton's: no FlashInfer decode wrapper")

    module = types.ModuleType("flashinfer")
    module.BatchPrefillWithPagedKVCacheWrapper = prefill  # type: ignore[attr-defined]
    module.BatchDecodeWithPagedKVCacheWrapper = decode  # type: ignore[attr-defined]
    return module


def _load(monkeypatch: pytest.MonkeyPatch, name: str, path: str) -> types.ModuleType:
    spec = importlib.util.spec_from_file_location(name, ROOT / path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, name, module)  # its dataclasses look it up; undone after
    spec.loader.exec_module(module)
    return module


@dataclass
class Loaded:
    fi: types.ModuleType  # kernels.attention.flashinfer_attention over the stand-in
    fp: types.ModuleType  # kernels.attention.flashinfer_prefill over it
    made: list[PrefillStandIn] = field(default_factory=list)  # prefill wrappers made


@pytest.fixture
def loaded(monkeypatch: pytest.MonkeyPatch) -> Loaded:
    pytest.importorskip("triton")
    made: list[PrefillStandIn] = []
    monkeypatch.setitem(sys.modules, "flashinfer", _stand_in(made))
    fi = _load(monkeypatch, "kernels.attention.flashinfer_attention",
               "kernels/attention/flashinfer_attention.py")  # fmt: skip
    fp = _load(monkeypatch, "kernels.attention.flashinfer_prefill",
               "kernels/attention/flashinfer_prefill.py")  # fmt: skip
    return Loaded(fi, fp, made)


def _recording_triton() -> type:
    """A TritonAttention whose forward is the reference (NaN past the decode rows when asked for
    the decodes alone) and whose every call is logged."""
    from kernels.attention.triton_attention import TritonAttention

    class RecordingTriton(TritonAttention):
        def __init__(self, device: torch.device, ratio: Fraction | None = None) -> None:
            super().__init__(device)
            self.log: list[tuple[Any, ...]] = []
            self.ratio = ratio

        def forward(
            self, q: torch.Tensor, k_cache: torch.Tensor, v_cache: torch.Tensor,
            meta: AttentionMetadata, scale: float, k_scale: float = 1.0, v_scale: float = 1.0,
            extend: bool = True,
        ) -> torch.Tensor:  # fmt: skip
            self.log.append(("forward", meta, extend, k_scale, v_scale))
            out = reference.paged_attention(q, k_cache, v_cache, meta, scale, k_scale, v_scale)
            if not extend:
                out[meta.num_decode_seqs :] = float("nan")
            return out

        def decode_context_ratio(
            self, q_dtype: torch.dtype, k_cache: torch.Tensor
        ) -> Fraction | None:
            self.log.append(("ratio", q_dtype))
            return self.ratio

        def init_cuda_graphs(self, max_batch_size: int, max_blocks_per_seq: int) -> None:
            self.log.append(("init_cuda_graphs", max_batch_size, max_blocks_per_seq))

        def prepare_capture(self, meta: AttentionMetadata) -> None:
            self.log.append(("prepare_capture", meta))

        def prepare_replay(self, meta: AttentionMetadata) -> None:
            self.log.append(("prepare_replay", meta))

    return RecordingTriton


def _batch(spec: tuple[list[int], list[int], int], dtype: torch.dtype, device: str = "cpu",
           seed: int = 3, heads: tuple[int, int, int] = HEADS) -> PagedBatch:  # fmt: skip
    return make_paged_batch(*spec, *heads, 16, dtype, device, seed=seed)


def _args(batch: PagedBatch, scale: float = SCALE) -> tuple[Any, ...]:
    return batch.q, batch.k_cache, batch.v_cache, batch.meta, scale


# CPU: routing, planning, assembly


def test_a_decode_only_batch_goes_to_triton_alone(loaded: Loaded) -> None:
    cpu = torch.device("cpu")
    triton = _recording_triton()(cpu)
    backend = loaded.fp.FlashInferPrefillAttention(cpu, triton)
    mixed, decodes = _batch(MIXED, torch.float16), _batch(DECODES, torch.float16)
    backend.forward(*_args(mixed))  # learns the layout: prepare plans from now on
    planned = len(loaded.made[0].plans)
    backend.prepare(decodes.meta)
    out = backend.forward(*_args(decodes))
    assert triton.log[-1] == ("forward", decodes.meta, True, 1.0, 1.0)
    assert torch.equal(out, reference.paged_attention(*_args(decodes)))
    assert len(loaded.made) == 1 and len(loaded.made[0].plans) == planned  # nothing planned


def test_queries_flashinfer_does_not_run_go_to_triton_alone(loaded: Loaded) -> None:
    """float32, and head dims FlashInfer has no kernels for (the tiny test models' 16)."""
    cpu = torch.device("cpu")
    triton = _recording_triton()(cpu)
    backend = loaded.fp.FlashInferPrefillAttention(cpu, triton)
    for dtype, heads in ((torch.float32, HEADS), (torch.float16, (4, 2, 16))):
        batch = _batch(MIXED, dtype, heads=heads)
        backend.prepare(batch.meta)
        out = backend.forward(*_args(batch))
        assert triton.log[-1] == ("forward", batch.meta, True, 1.0, 1.0)
        assert torch.equal(out, reference.paged_attention(*_args(batch)))
    assert not loaded.made and not backend.slots and backend.layout is None


def test_a_mixed_batch_takes_triton_decodes_and_flashinfer_extends(loaded: Loaded) -> None:
    """The decode rows from the Triton side (its decodes alone), the rest from the prefill
    wrapper planned over the extend sequences' rows and pages, both in one output."""
    cpu = torch.device("cpu")
    triton = _recording_triton()(cpu)
    backend = loaded.fp.FlashInferPrefillAttention(cpu, triton)
    batch = _batch(MIXED, torch.float16)
    backend.prepare(batch.meta)  # no layout yet: nothing to plan with
    assert not loaded.made
    out = backend.forward(*_args(batch))
    nd = batch.meta.num_decode_seqs
    assert triton.log == [("forward", batch.meta, False, 1.0, 1.0)]
    [wrapper] = loaded.made
    [plan] = wrapper.plans
    assert plan["qo_indptr"] == [0, 9, 14, 26]  # the extend rows, from q[nd:]'s first
    assert plan["heads"] == HEADS and plan["causal"] and plan["sm_scale"] == SCALE
    assert plan["dtypes"] == (torch.float16, torch.float16)
    [run] = wrapper.runs
    assert torch.equal(run["q"], batch.q[nd:]) and run["out"].data_ptr() == out[nd:].data_ptr()
    assert run["k_scale"] is None and run["v_scale"] is None  # a 16-bit cache: no scales
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out, reference.paged_attention(*_args(batch)), rtol=0, atol=0)
    again = backend.forward(*_args(batch))  # the next layer: the same plan
    assert len(wrapper.plans) == 1 and torch.equal(again, out)


def test_prepare_plans_a_mixed_batch_once_the_layout_is_known(loaded: Loaded) -> None:
    cpu = torch.device("cpu")
    backend = loaded.fp.FlashInferPrefillAttention(cpu, _recording_triton()(cpu))
    first, second = _batch(MIXED, torch.float16), _batch(MIXED, torch.float16, seed=4)
    backend.forward(*_args(first))
    backend.prepare(second.meta)
    plans = sum(len(w.plans) for w in loaded.made)
    assert plans == 2 and backend.slots.find(second.meta) is not None
    backend.forward(*_args(second))
    assert sum(len(w.plans) for w in loaded.made) == plans  # forward found prepare's plan


def test_a_float8_cache_hands_flashinfer_its_scales(loaded: Loaded) -> None:
    cpu = torch.device("cpu")
    triton = _recording_triton()(cpu)
    backend = loaded.fp.FlashInferPrefillAttention(cpu, triton)
    batch = _batch(MIXED, torch.float16)
    k8 = reference.quantize_kv(batch.k_cache, FP8, 0.5)
    v8 = reference.quantize_kv(batch.v_cache, FP8, 2.0)
    args = (batch.q, k8, v8, batch.meta, SCALE, 0.5, 2.0)
    out = backend.forward(*args)
    assert triton.log == [("forward", batch.meta, False, 0.5, 2.0)]
    [wrapper] = loaded.made
    assert wrapper.plans[0]["dtypes"] == (torch.float16, FP8)
    assert (wrapper.runs[0]["k_scale"], wrapper.runs[0]["v_scale"]) == (0.5, 2.0)
    torch.testing.assert_close(out, reference.paged_attention(*args), rtol=0, atol=0)


def test_nothing_is_planned_inside_a_capture(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A batch planned before the capture runs; one that was not is refused, not planned."""
    cpu = torch.device("cpu")
    backend = loaded.fp.FlashInferPrefillAttention(cpu, _recording_triton()(cpu))
    planned, other = _batch(MIXED, torch.float16), _batch(MIXED, torch.float16, seed=9)
    backend.forward(*_args(planned))
    monkeypatch.setattr(loaded.fi, "capturing", lambda device: True)
    backend.forward(*_args(planned))
    with pytest.raises(RuntimeError, match="had not planned while capturing"):
        backend.forward(*_args(other))
    assert sum(len(w.plans) for w in loaded.made) == 1


def test_decode_choice_sms_and_fresh_reach_the_triton_side(loaded: Loaded) -> None:
    from kernels.attention.triton_attention import TritonAttention

    cpu = torch.device("cpu")
    backend = loaded.fp.FlashInferPrefillAttention(cpu).with_decode(CHOICE)
    assert isinstance(backend.triton, TritonAttention) and backend.triton.choice == CHOICE
    again = backend.fresh()
    assert again.triton is not backend.triton and again.triton.choice == CHOICE
    assert again.slots is not backend.slots and again.name == "flashinfer-prefill"
    part = again.on_sms(8)
    assert part.triton.num_sms == 8 and part.triton.choice == CHOICE
    assert part.slots is again.slots  # one set of prefill plans, found by batch
    assert part.fresh().triton.num_sms == 8


def test_the_graph_hooks_and_the_decode_ratio_are_the_triton_sides(loaded: Loaded) -> None:
    """Decode CUDA graphs are pure Triton: every hook reaches the Triton side, none plans."""
    cpu = torch.device("cpu")
    triton = _recording_triton()(cpu, Fraction(21, 20))
    backend = loaded.fp.FlashInferPrefillAttention(cpu, triton)
    mixed, decodes = _batch(MIXED, torch.float16), _batch(DECODES, torch.float16)
    backend.forward(*_args(mixed))  # the layout is known: a planning backend would plan now
    triton.log.clear()
    assert backend.decode_context_ratio(torch.bfloat16, mixed.k_cache) == Fraction(21, 20)
    assert backend.supports_cuda_graphs(torch.bfloat16)
    backend.init_cuda_graphs(8, 40)
    backend.prepare_capture(decodes.meta)
    backend.prepare_replay(decodes.meta)
    assert triton.log == [
        ("ratio", torch.bfloat16),
        ("init_cuda_graphs", 8, 40),
        ("prepare_capture", decodes.meta),
        ("prepare_replay", decodes.meta),
    ]
    assert sum(len(w.plans) for w in loaded.made) == 1  # the mixed forward's only


def test_registered_above_triton_and_flashinfer(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """kernels.flashinfer_backend registers "flashinfer-prefill" above both backends it joins
    (the registry's choice where both import), and only where its Triton side imports; the
    engine's config accepts the name."""
    import kernels.registry
    from kernels.triton_backend import PRIORITY as TRITON_PRIORITY
    from runtime.config import ATTENTION_BACKENDS, EngineConfig

    def registered(prefill: types.ModuleType | None) -> dict[str, int]:
        calls: dict[str, int] = {}

        def record(op: str, backend: str, fn: Callable[..., Any], priority: int,
                   available: Callable[[torch.device], bool]) -> None:  # fmt: skip
            assert op == "paged_attention" and not available(torch.device("cpu"))
            calls[backend] = priority

        monkeypatch.setattr(kernels.registry, "register", record)
        monkeypatch.setitem(sys.modules, "kernels.attention.flashinfer_prefill", prefill)
        _load(monkeypatch, "flashinfer_backend_under_test", "kernels/flashinfer_backend.py")
        return calls

    found = registered(loaded.fp)
    assert set(found) == {"flashinfer", "flashinfer-prefill"}
    assert found["flashinfer-prefill"] > max(TRITON_PRIORITY, found["flashinfer"])
    assert registered(None) == {"flashinfer": found["flashinfer"]}  # no triton: not registered
    assert "flashinfer-prefill" in ATTENTION_BACKENDS
    assert EngineConfig(attention_backend="flashinfer-prefill").attention_backend


# CPU (Triton's interpreter) or GPU: the real Triton side


@pytest.mark.gpu
@needs_triton_device
def test_paged_attention_without_extend_runs_the_decode_rows_alone(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """``extend=False``: the decode rows as the default call computes them (in batch order and
    longest first by the by-context choice), and the extend kernel never launched."""
    pytest.importorskip("triton")
    module = importlib.import_module("kernels.triton.paged_attention")
    dtype = torch.float16 if INTERPRET else torch.bfloat16  # the interpreter's bf16 dot is wrong
    batch = _batch(MIXED, dtype, DEVICE, seed=5)
    nd = batch.meta.num_decode_seqs
    order = torch.tensor([0, 2, 1], dtype=torch.int32, device=DEVICE)
    calls: list[dict[str, Any]] = [{}, {"decode_order": order, "choice": CHOICE}]
    full = [module.paged_attention(*_args(batch), **kw) for kw in calls]

    def no_extend(*args: object, **kwargs: object) -> None:
        raise AssertionError("extend_attention ran")

    monkeypatch.setattr(module, "extend_attention", no_extend)
    for kw, expected in zip(calls, full, strict=True):
        out = module.paged_attention(*_args(batch), **kw, extend=False)
        assert out.shape == batch.q.shape and torch.equal(out[:nd], expected[:nd])


@pytest.mark.gpu
@needs_triton_device
def test_the_triton_decodes_and_planned_extends_match_the_reference(
    loaded: Loaded, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The real Triton side (paged_attention with extend=False, in its decode order) and the
    prefill stand-in's rows together equal the reference, and the decode rows equal the Triton
    backend's own."""
    from kernels.attention import triton_attention

    calls: list[bool] = []
    real = triton_attention.paged_attention

    def spy(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls.append(kwargs["extend"])
        return real(*args, **kwargs)

    monkeypatch.setattr(triton_attention, "paged_attention", spy)
    device = torch.device(DEVICE)
    backend = loaded.fp.FlashInferPrefillAttention(device).with_decode(CHOICE)
    batch = _batch(MIXED, torch.float16, DEVICE, seed=6)
    backend.prepare(batch.meta)
    out = backend.forward(*_args(batch))
    assert calls == [False] and len(loaded.made) == 1
    expected = reference.paged_attention(*_args(batch))
    assert not torch.isnan(out).any()
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=5e-3)
    nd = batch.meta.num_decode_seqs
    alone = triton_attention.TritonAttention(device, choice=CHOICE).forward(*_args(batch))
    assert torch.equal(out[:nd], alone[:nd])


# GPU with flashinfer

needs_gpu = pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
GPU_HEADS = (32, 8, 128)
GPU_BATCHES = {
    # six decodes (one at a 1-token context), chunks with prior context, a whole prompt
    "mixed": ([1] * 6 + [33, 70, 129, 5, 64], [1000, 7, 64, 513, 1, 300, 133, 70, 900, 25, 64], 6),
    "one_decode": ([1, 200, 17], [3000, 1024, 17], 1),
    "prefill_only": ([37, 5, 64], [290, 81, 64], 0),
}


def _gpu_backend() -> Any:
    pytest.importorskip("flashinfer")
    from kernels.attention.flashinfer_prefill import FlashInferPrefillAttention

    return FlashInferPrefillAttention(torch.device("cuda")).with_decode(DecodeChoice("by-context"))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("name", sorted(GPU_BATCHES))
@pytest.mark.parametrize("kv", ["bf16", "fp8"])
def test_mixed_batches_match_the_reference_on_the_gpu(name: str, kv: str) -> None:
    backend = _gpu_backend()
    batch = make_paged_batch(*GPU_BATCHES[name], *GPU_HEADS, 16, torch.bfloat16, "cuda", seed=1)
    scales = (0.7, 1.3) if kv == "fp8" else (1.0, 1.0)
    k, v = batch.k_cache, batch.v_cache
    if kv == "fp8":
        k, v = reference.quantize_kv(k, FP8, scales[0]), reference.quantize_kv(v, FP8, scales[1])
    args = (batch.q, k, v, batch.meta, GPU_HEADS[2] ** -0.5, *scales)
    expected = reference.paged_attention(*args)
    backend.prepare(batch.meta)
    out = backend.forward(*args)
    assert not torch.isnan(out).any()
    assert relative_error(out, expected) < 1e-2
    torch.testing.assert_close(out.float(), expected.float(), rtol=0, atol=3e-2)
    plan = backend.slots.find(batch.meta)
    assert plan is not None and plan.decode is None and plan.prefill is not None  # FlashInfer ran
    nd = batch.meta.num_decode_seqs
    alone = backend.triton.forward(*args)  # the Triton backend's decode rows, bit for bit
    assert torch.equal(out[:nd], alone[:nd])
    assert torch.equal(backend.forward(*args), out)  # the next layer: the same plan


@pytest.mark.gpu
@needs_gpu
def test_the_registry_lists_it_and_picks_it_on_the_gpu() -> None:
    pytest.importorskip("flashinfer")
    from kernels import attention_backends, get_ops

    assert "flashinfer-prefill" in attention_backends("cuda")
    assert get_ops("cuda").backends["paged_attention"] == "flashinfer-prefill"
    ops = get_ops("cuda", "flashinfer-prefill")
    assert ops.paged_attention.name == "flashinfer-prefill"


# prompts of 5 to 150 tokens in 64-token iterations: chunks with prior context beside decodes
ENGINE_PROMPTS = [
    [(7 * i + 11 * j) % 250 + 3 for i in range(n)] for j, n in enumerate((5, 13, 40, 90, 150, 33))
]


@pytest.fixture(scope="module")
def llama_d128(tmp_path_factory: pytest.TempPathFactory) -> str:
    """A small random Llama with heads FlashInfer runs (head_dim 128, GQA group 4)."""
    from runtime.tiny import make_tiny_model

    path = tmp_path_factory.mktemp("flashinfer_prefill") / "llama_d128"
    kw = dict(hidden_size=512, intermediate_size=512, num_attention_heads=4, num_key_value_heads=1)
    return str(make_tiny_model(path, arch="llama", seed=21, **kw))


@pytest.mark.gpu
@needs_gpu
@pytest.mark.parametrize("kv", ["auto", "fp8"])
@pytest.mark.parametrize("eager", [True, False], ids=["eager", "cuda-graphs"])
def test_engine_greedy_tokens_match_the_triton_backend(
    llama_d128: str, kv: str, eager: bool
) -> None:
    """The engine's greedy tokens with "flashinfer-prefill" against "triton" (bf16: a near-tie
    may flip a late token of one sequence; the log-probabilities are compared up to each
    sequence's first difference), decodes replayed from CUDA graphs unless eager."""
    pytest.importorskip("flashinfer")
    from runtime import LLM, SamplingParams
    from tests.runtime.greedy_agreement import agreeing_prefixes

    params = SamplingParams(max_tokens=12, temperature=0.0, ignore_eos=True, logprobs=True)
    # both engines alive at once: a fixed KV budget, not one sized to the free memory
    kw = dict(dtype="bfloat16", device="cuda", enforce_eager=eager, kv_cache_dtype=kv,
              max_num_seqs=16, max_num_batched_tokens=64,
              kv_cache_memory_bytes=64 << 20)  # fmt: skip
    outputs, engines = {}, {}
    for backend in ("triton", "flashinfer-prefill"):
        engines[backend] = LLM(llama_d128, attention_backend=backend, **kw)
        outputs[backend] = engines[backend].generate(ENGINE_PROMPTS, params)
    engine = engines["flashinfer-prefill"].engine
    attention = engine.ops.paged_attention
    assert attention.name == "flashinfer-prefill" and (engine.runner.graphs is None) == eager
    assert attention.layout is not None and len(attention.slots) > 0  # FlashInfer's prefill ran
    same = agreeing_prefixes(outputs["triton"], outputs["flashinfer-prefill"], 12, (kv, eager))
    assert same >= len(ENGINE_PROMPTS) - 1
