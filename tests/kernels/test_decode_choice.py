"""How decode attention runs (``kernels.decode_choice``): the plain choice and its validation, which
kernel and dots ``paged_attention`` picks for it, and every choice over a float8 cache (decodes
and extends of one batch) against the torch reference on fresh random batches; the extend
kernel's float16 dots with queries far outside float16's range; "by-context": its rule (max
context over mean, at the choice's exact ratio, ``by-context@RATIO``), its pick per batch, from
where it reads the batch's contexts, and when decode CUDA graphs must be captured per case."""

from __future__ import annotations

import dataclasses
import importlib
import random
import re
from fractions import Fraction

import pytest
import torch
from kernel_batches import PagedBatch, make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device

from kernels import reference
from kernels.decode_choice import (
    FP8_DOTS,
    UNIFORM_CONTEXT_RATIO,
    WHOLE_GPU_KERNELS,
    DecodeChoice,
    contexts_uniform,
)

FP8 = torch.float8_e4m3fn
K_SCALE, V_SCALE = 0.7, 1.3


def test_choice_parses_and_refuses_unknown_names() -> None:
    assert DecodeChoice() == DecodeChoice("auto", "fp16")  # the default: float16 dots
    assert DecodeChoice.parse("gather:q") == DecodeChoice("gather", "q")
    assert DecodeChoice.parse(" tma-items ") == DecodeChoice("tma-items", "fp16")
    for kernel in WHOLE_GPU_KERNELS:
        for dot in FP8_DOTS:
            assert DecodeChoice.parse(DecodeChoice(kernel, dot).spec()) == DecodeChoice(kernel, dot)
    with pytest.raises(ValueError, match="decode kernel must be one of auto, gather"):
        DecodeChoice.parse("flash:fp16")
    with pytest.raises(ValueError, match="fp8 decode dot must be one of fp16, q"):
        DecodeChoice.parse("gather:fp8")  # the float8 wgmma dots are not an engine choice


def test_by_context_takes_its_uniform_ratio_in_the_spec_exactly() -> None:
    by = DecodeChoice("by-context")
    # the default, as measured in the engine (it was 5/4 before the seventh session)
    assert by.uniform_ratio == UNIFORM_CONTEXT_RATIO == Fraction(21, 20)
    assert DecodeChoice.parse("by-context:q") == DecodeChoice("by-context", "q")
    assert DecodeChoice.parse("by-context@1.05:fp16") == DecodeChoice(
        "by-context", "fp16", Fraction(21, 20)
    )  # exact, not the float 1.05
    assert DecodeChoice.parse(" by-context@1.02 ").uniform_ratio == Fraction(51, 50)
    assert DecodeChoice.parse("by-context@1").uniform_ratio == 1
    assert DecodeChoice.parse("by-context@4/3").uniform_ratio == Fraction(4, 3)
    assert DecodeChoice.parse("by-context@1.250").uniform_ratio == Fraction(5, 4)
    # spec() names the ratio of every by-context choice, as a decimal where one is exact
    assert by.spec() == "by-context@1.05:fp16" and by.kernel_spec() == "by-context@1.05"
    assert DecodeChoice.parse("by-context@1.050:q").spec() == "by-context@1.05:q"
    assert DecodeChoice.parse("gather:q").kernel_spec() == "gather"
    for ratio in ("1", "1.02", "1.05", "1.1", "1.25", "2.5", "4/3", "10"):
        for dot in FP8_DOTS:
            choice = DecodeChoice.parse(f"by-context@{ratio}:{dot}")
            assert choice.uniform_ratio == Fraction(ratio) and choice.fp8_dot == dot
            assert DecodeChoice.parse(choice.spec()) == choice
            assert DecodeChoice.of(choice.kernel_spec(), dot) == choice
    assert DecodeChoice.parse("by-context@4/3").spec() == "by-context@4/3:fp16"


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("gather@1.05:q", "only by-context takes a uniform-context ratio"),
        ("auto@1.25", "only by-context takes a uniform-context ratio"),
        ("by-context@0.99", "at least 1"),
        ("by-context@0", "at least 1"),
        ("by-context@", "not a ratio"),
        ("by-context@abc:fp16", "not a ratio"),
        ("by-context@1.0.5", "not a ratio"),
        ("by-context@-1.1", "not a ratio"),
        ("by-context@1e0", "not a ratio"),
        ("by-context@nan", "not a ratio"),
        ("by-context@1/0", "not a ratio"),
        ("by-context@1.05@1.1", "not a ratio"),
    ],
)
def test_a_bad_uniform_ratio_is_refused_naming_the_spec(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=f"decode choice '{re.escape(spec)}': .*{why}"):
        DecodeChoice.parse(spec)


def test_the_choice_itself_refuses_an_inexact_low_or_misplaced_ratio() -> None:
    with pytest.raises(TypeError, match="exact"):
        DecodeChoice("by-context", uniform_ratio=1.05)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="at least 1"):
        DecodeChoice("by-context", uniform_ratio=Fraction(99, 100))
    with pytest.raises(ValueError, match="only by-context"):
        DecodeChoice("gather", uniform_ratio=Fraction(11, 10))


def _launch(
    monkeypatch: pytest.MonkeyPatch, cache: torch.dtype, num_sms: int | None, choice: DecodeChoice,
    tma: bool = True, config: object = None, uniform: bool | None = None,
) -> tuple[str, object, int | None]:  # fmt: skip
    """(kernel name, config, grid SMs) picked for q on the CPU, TMA support as given."""
    pytest.importorskip("triton")
    pa = importlib.import_module("kernels.triton.paged_attention")  # the module, not its function
    monkeypatch.setattr(pa, "tma_supported", lambda q, k: tma)
    q = torch.zeros(2, 4, 64, dtype=torch.bfloat16)
    k_cache = torch.zeros(3, 16, 2, 64).to(cache)
    kernel, cfg, sms = pa.decode_launch(q, k_cache, num_sms, config, choice, uniform)  # type: ignore[arg-type]
    return kernel.__name__, cfg, sms


def test_float8_caches_get_float16_dots_everywhere_and_q_stays_reachable(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("triton")
    from kernels.triton.decode_attention_tma import tuned_config
    from kernels.triton.paged_common import device_sm_count

    device_sms = device_sm_count(torch.device("cpu"))  # 8 under the interpreter
    for num_sms in (None, device_sms, 4):  # the whole GPU (two ways) and a partition
        for dot in FP8_DOTS:
            _, cfg, _ = _launch(monkeypatch, FP8, num_sms, DecodeChoice(fp8_dot=dot))
            assert cfg.fp8_dot == dot
    # a partition: the TMA kernel's measured configuration for the budget, float16 dots
    name, cfg, sms = _launch(monkeypatch, FP8, 4, DecodeChoice())
    assert (name, cfg, sms) == ("decode_attention_tma", tuned_config(4, 16), 4)
    assert tuned_config(4, 16).fp8_dot == "fp16"
    name, cfg, sms = _launch(monkeypatch, FP8, 4, DecodeChoice(), tma=False)
    assert name == "decode_attention" and sms == 4 and cfg.fp8_dot == "fp16"


def test_whole_gpu_kernel_follows_the_choice_and_the_cache_dtype(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("triton")
    from kernels.triton.decode_attention import DecodeConfig
    from kernels.triton.decode_attention_tma import tuned_config

    pa = importlib.import_module("kernels.triton.paged_attention")
    device_sms = 8  # the interpreter's device_sm_count
    whole = {
        "gather": ("decode_attention", DecodeConfig(), None),  # over float8 pages
        "gather-64": ("decode_attention", DecodeConfig(), None),
        "tma": ("decode_attention_tma", tuned_config(device_sms, 16), device_sms),
        "tma-items": ("decode_attention_tma", tuned_config(device_sms, 16), None),
    }
    # over 16-bit pages the gather kernel runs its measured whole-GPU configuration
    sixteen = {**whole, "gather": ("decode_attention", pa.WHOLE_GPU_GATHER, None)}
    for kernel, expected in whole.items():
        assert _launch(monkeypatch, FP8, None, DecodeChoice(kernel)) == expected
        assert _launch(monkeypatch, torch.bfloat16, None, DecodeChoice(kernel)) == sixteen[kernel]
        # without TMA (pre-Hopper GPUs, unaligned caches) every choice runs the gather kernel
        assert _launch(monkeypatch, FP8, None, DecodeChoice(kernel), tma=False)[0] == (
            "decode_attention"
        )
    assert _launch(monkeypatch, torch.bfloat16, None, DecodeChoice("gather-64"), tma=False)[1] == (
        DecodeConfig()
    )
    assert DecodeConfig(block_n=128, num_stages=2) == pa.WHOLE_GPU_GATHER
    # auto: 16-bit caches keep the gather kernel; float8 ones the measured AUTO_WHOLE_GPU_FP8
    assert _launch(monkeypatch, torch.bfloat16, None, DecodeChoice()) == sixteen["gather"]
    assert _launch(monkeypatch, FP8, None, DecodeChoice()) == whole[pa.AUTO_WHOLE_GPU_FP8]
    # heads wider than 128 keep the smaller tiles (shared memory)
    wide = torch.zeros(3, 16, 2, 256, dtype=torch.bfloat16)
    assert pa.gather_config(wide, "fp16") == DecodeConfig()
    # an explicit configuration runs as given, its own dots included
    explicit = DecodeConfig(32, 1, 2, 8, tma=True, fp8_dot="q")
    assert _launch(monkeypatch, FP8, 4, DecodeChoice(), config=explicit) == (
        "decode_attention_tma", explicit, 4,
    )  # fmt: skip


def test_by_context_rule_compares_the_longest_context_with_the_mean() -> None:
    r = Fraction(5, 4)
    assert contexts_uniform([800] * 256, r)  # the measured uniform shape (ratio 1.0)
    assert contexts_uniform([5, 3], r)
    assert contexts_uniform((125, 100, 100, 100, 100, 125, 125, 125), r)
    assert not contexts_uniform([6, 3], r)  # 6 / 4.5 = 1.33
    # exactly at the threshold (ratio 1.25 in integers, no rounding either way), and one above
    assert contexts_uniform([15, 11, 11, 11], r) and contexts_uniform([1500] + [1100] * 3, r)
    assert not contexts_uniform([16, 11, 11, 11], r)
    assert not contexts_uniform([1501] + [1100] * 3, r)
    # the measured ragged shape: uniformly random up to twice the mean (ratio about 2)
    rng = random.Random(0)
    assert not contexts_uniform([rng.randint(1, 1600) for _ in range(256)], r)
    assert contexts_uniform([], r)
    # the default, 1.05: at the threshold in integers (21 x 4 = 1.05 x 80), and one above
    d = UNIFORM_CONTEXT_RATIO
    assert contexts_uniform([800] * 256, d) and contexts_uniform([21, 20, 20, 19], d)
    assert not contexts_uniform([22, 20, 20, 19], d)
    assert not contexts_uniform((125, 100, 100, 100, 100, 125, 125, 125), d)  # 125 / 112.5


@pytest.mark.parametrize(
    ("ratio", "at", "above"),
    [
        # max / mean exactly the ratio (uniform) and the smallest step past it (ragged)
        ("1", [7, 7, 7], [8, 7, 7]),
        ("1", [1000] * 256, [1001] + [1000] * 255),
        # 102 / 100 = 1.02: lengths 102 and 98 mean 100; 103 and 97 too, but 103 / 100 > 1.02
        ("1.02", [102, 98], [103, 97]),
        ("1.02", [1020] + [995] * 4, [1021] + [995] * 4),  # 1020 / 1000 vs 1021 / 1000.2
        # 1.05 x 20 = 21 (lengths 21 and 19, mean 20)
        ("1.05", [21, 19], [22, 19]),
        ("1.05", [1050] + [1000] * 20 + [950], [1051] + [1000] * 20 + [950]),  # mean 1000
        ("1.25", [15, 11, 11, 11], [16, 11, 11, 11]),
        ("1.25", [5, 3], [6, 3]),
    ],
)
def test_contexts_uniform_at_each_ratios_boundary_in_exact_arithmetic(
    ratio: str, at: list[int], above: list[int]
) -> None:
    r = Fraction(ratio)
    assert max(at) * len(at) == r * sum(at)  # exactly on the boundary (no float would say so)
    assert contexts_uniform(at, r) and not contexts_uniform(above, r)
    assert not contexts_uniform(at, r - Fraction(1, 10**9))  # any tighter ratio: ragged
    assert contexts_uniform([], r) and contexts_uniform([42] * 3, r)  # equal lengths: uniform


def test_by_context_picks_tma_items_on_uniform_16_bit_batches_and_gather_else(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    by = DecodeChoice("by-context")
    bf16 = torch.bfloat16
    tma_items = _launch(monkeypatch, bf16, None, DecodeChoice("tma-items"))
    gather = _launch(monkeypatch, bf16, None, DecodeChoice("gather"))
    assert tma_items[0] == "decode_attention_tma" and tma_items[2] is None
    assert _launch(monkeypatch, bf16, None, by, uniform=True) == tma_items
    assert _launch(monkeypatch, bf16, None, by, uniform=False) == gather
    # the lengths not known on the host: the kernel that keeps its speed on ragged batches
    assert _launch(monkeypatch, bf16, None, by, uniform=None) == gather
    # float8 caches: "auto" (AUTO_WHOLE_GPU_FP8) whatever the contexts
    auto_fp8 = _launch(monkeypatch, FP8, None, DecodeChoice())
    for uniform in (True, False, None):
        assert _launch(monkeypatch, FP8, None, by, uniform=uniform) == auto_fp8
    # no TMA (GPUs before Hopper, unaligned caches): the gather kernel
    assert _launch(monkeypatch, bf16, None, by, tma=False, uniform=True) == gather
    # a pipeline partition keeps its measured kernel
    assert _launch(monkeypatch, bf16, 4, by, uniform=False) == _launch(
        monkeypatch, bf16, 4, DecodeChoice()
    )


def _decode_batch(
    ctx_lens: list[int], seed: int, dtype: torch.dtype = torch.float32, device: str = "cpu"
) -> PagedBatch:
    """Decodes of these contexts first, then one 5-token extend over 9 cached tokens."""
    n = len(ctx_lens)
    return make_paged_batch([1] * n + [5], [*ctx_lens, 9], n, 4, 2, 64, 16, dtype, device, seed)


def test_eager_by_context_reads_the_decode_rows_host_lengths_or_a_graphs_fixed_case() -> None:
    pytest.importorskip("triton")
    from kernels.triton.paged_attention import decode_contexts_uniform

    r = Fraction(5, 4)
    # decode rows 100..120 (the extend's 9 would make the whole batch ragged): 120 / 110 = 1.09
    meta = _decode_batch([100, 110, 120], seed=1).meta
    assert decode_contexts_uniform(meta, r) is True
    assert decode_contexts_uniform(meta, Fraction(11, 10)) is True
    # by-context@1.05 (the default): ragged
    assert decode_contexts_uniform(meta, UNIFORM_CONTEXT_RATIO) is False
    assert decode_contexts_uniform(_decode_batch([10, 110, 120], seed=1).meta, r) is False
    # device-only metadata (a CUDA graph's): not known, never read back from the device
    blind = dataclasses.replace(meta, cu_seqlens_q_host=(), context_lens_host=())
    assert decode_contexts_uniform(blind, r) is None
    # a graph captured for one case says so, whatever the lengths and the ratio
    fixed = dataclasses.replace(meta, decode_contexts_uniform=False)
    assert decode_contexts_uniform(fixed, r) is False
    uniform = dataclasses.replace(blind, decode_contexts_uniform=True)
    assert decode_contexts_uniform(uniform, Fraction(1)) is True


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize(
    ("spec", "ctx_lens", "uniform"),
    [
        ("by-context", [108, 110, 112], True),  # 112 / 110 = 1.02 (the default ratio 1.05)
        ("by-context", [100, 110, 120], False),  # 120 / 110 = 1.09
        ("by-context@1.1", [100, 110, 120], True),  # the choice's ratio, not the module's
        ("by-context@1.05", [100, 110, 120], False),
    ],
    ids=["uniform", "ragged", "uniform@1.1", "ragged@1.05"],
)
def test_triton_backend_by_context_matches_reference_and_decides_once_per_batch(
    monkeypatch: pytest.MonkeyPatch, spec: str, ctx_lens: list[int], uniform: bool
) -> None:
    """The backend's forward (two layers, one batch): the kernel picked per the decode rows'
    host lengths, decided once for the batch, the output the reference's (bf16 on a GPU, where
    the uniform batch runs TMA on Hopper; float32 on the CPU interpreter, where both cases run
    the gather kernel: TMA needs a Hopper GPU, and the interpreter's bfloat16 dots are wrong)."""
    pytest.importorskip("triton")
    from kernels.attention.triton_attention import TritonAttention

    pa = importlib.import_module("kernels.triton.paged_attention")
    ta = importlib.import_module("kernels.attention.triton_attention")
    seen: list[bool | None] = []
    decided: list[object] = []
    pick, decide = pa.whole_gpu_kernel, ta.decode_contexts_uniform
    monkeypatch.setattr(pa, "whole_gpu_kernel",
                        lambda c, d, t, u=None: seen.append(u) or pick(c, d, t, u))  # fmt: skip
    monkeypatch.setattr(ta, "decode_contexts_uniform",
                        lambda m, r: decided.append(m) or decide(m, r))  # fmt: skip
    dtype = torch.float32 if INTERPRET else torch.bfloat16
    batch = _decode_batch(ctx_lens, ctx_lens[0], dtype, DEVICE)
    choice = DecodeChoice.parse(spec)
    backend = TritonAttention(torch.device(DEVICE), choice=choice)
    args = (batch.q, batch.k_cache, batch.v_cache, batch.meta, 64**-0.5)
    outs = [backend.forward(*args) for _ in range(2)]  # two layers of one batch
    assert seen == [uniform, uniform] and decided == [batch.meta]
    seen.clear()  # paged_attention without the backend decides by the choice's ratio too
    outs.append(pa.paged_attention(*args, choice=choice))
    assert seen == [uniform]
    expected = reference.paged_attention(*args)
    for out in outs:
        assert relative_error(out, expected) < (1e-5 if INTERPRET else 1e-2)


def test_graphs_split_by_context_only_for_by_context_over_caches_tma_reads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    pytest.importorskip("triton")
    from kernels.attention.torch_attention import TorchAttention
    from kernels.attention.triton_attention import TritonAttention

    pa = importlib.import_module("kernels.triton.paged_attention")
    cpu, bf16 = torch.device("cpu"), torch.bfloat16
    k16 = torch.zeros(3, 16, 2, 64, dtype=bf16)
    by = TritonAttention(cpu, choice=DecodeChoice("by-context"))
    monkeypatch.setattr(pa, "tma_supported", lambda q, k: True)
    # the ratio the graphs classify loaded batches by: the choice's
    assert by.decode_context_ratio(bf16, k16) == UNIFORM_CONTEXT_RATIO
    assert by.fresh().decode_context_ratio(bf16, k16) == UNIFORM_CONTEXT_RATIO
    tight = by.with_decode(DecodeChoice.parse("by-context@1.02"))
    assert tight.decode_context_ratio(bf16, k16) == Fraction(51, 50)
    assert tight.fresh().decode_context_ratio(bf16, k16) == Fraction(51, 50)
    assert by.decode_context_ratio(bf16, k16.to(FP8)) is None  # float8: "auto" in every batch
    assert by.on_sms(4).decode_context_ratio(bf16, k16) is None  # a partition's measured kernel
    for kernel in WHOLE_GPU_KERNELS:  # every other choice: one kernel whatever the contexts
        other = TritonAttention(cpu, choice=DecodeChoice(kernel))
        assert (other.decode_context_ratio(bf16, k16) is not None) == (kernel == "by-context")
    assert TorchAttention(cpu).decode_context_ratio(bf16, k16) is None
    monkeypatch.setattr(pa, "tma_supported", lambda q, k: False)
    assert by.decode_context_ratio(bf16, k16) is None  # the gather kernel either way


def test_the_triton_backend_keeps_its_choice_across_copies() -> None:
    pytest.importorskip("triton")
    from kernels.attention.torch_attention import TorchAttention
    from kernels.attention.triton_attention import TritonAttention

    choice = DecodeChoice("gather", "q")
    backend = TritonAttention(torch.device("cpu")).with_decode(choice)
    assert backend.choice == choice
    assert backend.fresh().choice == choice and backend.on_sms(4).choice == choice
    assert backend.on_sms(4).num_sms == 4
    torch_backend = TorchAttention(torch.device("cpu"))
    assert torch_backend.with_decode(choice) is torch_backend  # no choice to make


def _interpreter_reads_float8() -> bool:
    from test_fp8_decode_dots import _interpreter_reads_float8 as reads

    return reads()


def _fp8_batch(seed: int) -> tuple[PagedBatch, torch.Tensor, torch.Tensor]:
    """Decodes (ragged, one split on the GPU) first, then extends, over a float8 cache."""
    if INTERPRET:
        batch = make_paged_batch([1, 1, 5, 19], [3, 40, 21, 19], 2, 4, 2, 64, 16,
                                 torch.bfloat16, DEVICE, seed)  # fmt: skip
    else:
        batch = make_paged_batch([1, 1, 1, 1, 1, 33, 70], [1, 17, 300, 1025, 4099, 133, 70], 5,
                                 32, 8, 128, 16, torch.bfloat16, DEVICE, seed)  # fmt: skip
    k8 = reference.quantize_kv(batch.k_cache, FP8, K_SCALE)
    v8 = reference.quantize_kv(batch.v_cache, FP8, V_SCALE)
    return batch, k8, v8


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("dot", FP8_DOTS)
@pytest.mark.parametrize("kernel", WHOLE_GPU_KERNELS)
def test_every_choice_over_fp8_matches_reference(kernel: str, dot: str) -> None:
    """The whole GPU (each kernel) and a partition of a few SMs, decodes and extends in one
    batch; on the CPU interpreter only the gather kernel runs (TMA needs a Hopper GPU)."""
    pytest.importorskip("triton")
    from kernels.triton import paged_attention

    if INTERPRET and (not _interpreter_reads_float8() or kernel not in ("auto", "gather")):
        pytest.skip("the CPU interpreter runs the gather kernel only, where it reads float8")
    if INTERPRET and dot == "q":
        pytest.skip("the CPU interpreter's bfloat16 dots are wrong")
    batch, k8, v8 = _fp8_batch(seed=len(kernel) + len(dot))
    scale = batch.q.shape[-1] ** -0.5
    q, meta = batch.q, batch.meta
    expected = reference.paged_attention(q, k8, v8, meta, scale, K_SCALE, V_SCALE)
    for num_sms in (None, 4):
        out = paged_attention(q, k8, v8, meta, scale, K_SCALE, V_SCALE, num_sms=num_sms,
                              choice=DecodeChoice(kernel, dot))  # fmt: skip
        assert out.dtype == torch.bfloat16 and torch.isfinite(out).all()
        assert relative_error(out, expected) < 1e-2, num_sms


@pytest.mark.gpu
@needs_triton_device
@pytest.mark.parametrize("magnitude", [1.0, 2.0**20, 2.0**-40])
def test_extend_float16_dots_match_reference_at_any_query_magnitude(magnitude: float) -> None:
    """Prefill chunks over a float8 cache with float16 dots: bfloat16 queries of about 1e6
    (float16 overflows at 65504) or 1e-12, the softmax scale divided by the same factor, equal
    the reference's attention of unit queries; and agree with the widening to q's dtype."""
    pytest.importorskip("triton")
    from kernels.triton.extend_attention import extend_attention

    if INTERPRET and not _interpreter_reads_float8():
        pytest.skip("this Triton's CPU interpreter does not read float8 tensors")
    batch, k8, v8 = _fp8_batch(seed=int(magnitude > 1) + 2 * int(magnitude < 1))
    meta = batch.meta
    q = (batch.q.float() * magnitude).to(torch.bfloat16)
    scale = q.shape[-1] ** -0.5 / magnitude
    first, rows = meta.num_decode_seqs, slice(meta.cu_seqlens_q_host[meta.num_decode_seqs], None)
    expected = reference.paged_attention(q, k8, v8, meta, scale, K_SCALE, V_SCALE)[rows]
    outs = {}
    for dot in FP8_DOTS:
        out = torch.full_like(q, float("nan"))
        extend_attention(q, k8, v8, meta.block_tables, meta.context_lens, meta.cu_seqlens_q,
                         first, meta.num_seqs - first, meta.max_query_len, scale, out, K_SCALE,
                         V_SCALE, fp8_dot=dot)  # fmt: skip
        outs[dot] = out[rows]
    assert torch.isfinite(outs["fp16"]).all()
    assert relative_error(outs["fp16"], expected) < 1e-2
    if magnitude == 1.0 and not INTERPRET:  # the interpreter's bfloat16 dots are wrong
        assert relative_error(outs["fp16"], outs["q"]) < 1e-2


def test_extend_refuses_an_unknown_dot() -> None:
    pytest.importorskip("triton")
    from kernels.triton.extend_attention import extend_attention

    batch, k8, v8 = _fp8_batch(seed=5)
    m = batch.meta
    with pytest.raises(ValueError, match="fp8_dot must be 'fp16' or 'q'"):
        extend_attention(batch.q, k8, v8, m.block_tables, m.context_lens, m.cu_seqlens_q, 0,
                         1, 1, 1.0, torch.empty_like(batch.q), fp8_dot="fp8")  # fmt: skip
