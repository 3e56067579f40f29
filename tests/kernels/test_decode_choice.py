"""How decode attention runs (``kernels.decode_choice``): the plain choice and its validation, which
kernel and dots ``paged_attention`` picks for it, and every choice over a float8 cache (decodes
and extends of one batch) against the torch reference on fresh random batches; the extend
kernel's float16 dots with queries far outside float16's range."""

from __future__ import annotations

import importlib

import pytest
import torch
from kernel_batches import PagedBatch, make_paged_batch, relative_error
from triton_env import DEVICE, INTERPRET, needs_triton_device

from kernels import reference
from kernels.decode_choice import FP8_DOTS, WHOLE_GPU_KERNELS, DecodeChoice

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


def _launch(
    monkeypatch: pytest.MonkeyPatch, cache: torch.dtype, num_sms: int | None, choice: DecodeChoice,
    tma: bool = True, config: object = None,
) -> tuple[str, object, int | None]:  # fmt: skip
    """(kernel name, config, grid SMs) picked for q on the CPU, TMA support as given."""
    pytest.importorskip("triton")
    pa = importlib.import_module("kernels.triton.paged_attention")  # the module, not its function
    monkeypatch.setattr(pa, "tma_supported", lambda q, k: tma)
    q = torch.zeros(2, 4, 64, dtype=torch.bfloat16)
    k_cache = torch.zeros(3, 16, 2, 64).to(cache)
    kernel, cfg, sms = pa.decode_launch(q, k_cache, num_sms, config, choice)  # type: ignore[arg-type]
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
