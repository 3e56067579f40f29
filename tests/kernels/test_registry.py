"""The registry's fused operator: used only where the backend of both operators it replaces
has it; otherwise (and after ``unfused()``) None, so the model runs rotary, then store_kv."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import replace

import pytest
import torch

from kernels import get_ops, reference, registry


@pytest.fixture
def rotary_elsewhere() -> Iterator[None]:
    """A backend ("other") with a rotary kernel and no fused one, preferred on the CPU."""
    get_ops.cache_clear()
    registry.register("rotary", "other", reference.rotary, priority=50, available=lambda _d: True)
    yield
    registry._REGISTRY["rotary"] = [i for i in registry._REGISTRY["rotary"] if i.backend != "other"]
    get_ops.cache_clear()


def test_cpu_ops_use_the_fused_reference() -> None:
    ops = get_ops("cpu")
    assert ops.rotary_store_kv is reference.rotary_store_kv
    assert ops.backends["rotary_store_kv"] == "torch"
    off = ops.unfused()
    assert off.rotary_store_kv is None and off.backends["rotary_store_kv"] == "unfused"
    assert off.rotary is ops.rotary and off.store_kv is ops.store_kv


@pytest.mark.usefixtures("rotary_elsewhere")
def test_a_backend_without_the_fused_kernel_keeps_the_two_operators() -> None:
    ops = get_ops("cpu")
    assert ops.backends["rotary"] == "other" and ops.backends["store_kv"] == "torch"
    assert ops.rotary_store_kv is None and ops.backends["rotary_store_kv"] == "unfused"
    assert "rotary_store_kv=unfused" in ops.describe()


@pytest.mark.usefixtures("rotary_elsewhere")
def test_with_backend_drops_the_fused_operator_its_new_backend_lacks(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("NANOLANG_KERNELS", "torch")
    ops = get_ops("cpu")
    assert ops.rotary_store_kv is reference.rotary_store_kv
    moved = ops.with_backend("rotary", "other", "cpu")
    assert moved.rotary_store_kv is None and moved.backends["rotary_store_kv"] == "unfused"
    assert moved.with_backend("linear", "torch", "cpu").rotary_store_kv is None
    same = ops.with_backend("store_kv", "torch", "cpu")
    assert same.rotary_store_kv is reference.rotary_store_kv


def test_a_fused_operator_is_not_chosen_by_name(monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(ValueError, match="follows"):
        get_ops("cpu").with_backend("rotary_store_kv", "torch", "cpu")
    get_ops.cache_clear()
    monkeypatch.setenv("NANOLANG_KERNELS", "rotary_store_kv=torch")
    try:
        with pytest.raises(ValueError, match="force those"):
            get_ops("cpu")
    finally:
        get_ops.cache_clear()


def test_engine_config_names_every_attention_backend_the_registry_can_hold() -> None:
    """EngineConfig.attention_backend's names are the registry's (the optional backends loaded
    where their libraries import), so the config refuses a typo before any engine is built."""
    from kernels.registry import ATTENTION, _load_optional_backends, implementations
    from runtime.config import ATTENTION_BACKENDS, EngineConfig

    _load_optional_backends()  # what a GPU device loads: the ones whose libraries import
    assert set(implementations(ATTENTION)) <= set(ATTENTION_BACKENDS)
    assert "torch" in implementations(ATTENTION)
    for name in ATTENTION_BACKENDS:
        assert EngineConfig(attention_backend=name).attention_backend == name
    with pytest.raises(ValueError, match="attention_backend must be one of torch, triton"):
        EngineConfig(attention_backend="cudnn")


def test_on_sms_aims_the_operators_that_can_be_aimed(monkeypatch: pytest.MonkeyPatch) -> None:
    """Ops.on_sms: attention's grid sized to the SMs, and each operator whose backend registered
    an SM-aimed variant replaced by it; the rest (the CPU's torch linear) unchanged."""
    from runtime.pipeline.executor import PipelineExecutor

    ops = get_ops("cpu")
    same = ops.on_sms(16)
    assert same.linear is ops.linear and same.paged_attention is ops.paged_attention
    assert PipelineExecutor._partition_ops(ops, None) is ops
    aimed: list[int] = []

    def factory(n: int):  # type: ignore[no-untyped-def]
        aimed.append(n)
        return reference.linear

    monkeypatch.setitem(registry._ON_SMS, ("linear", "torch"), factory)
    monkeypatch.setitem(registry._ON_SMS, ("rms_norm", "no-such-backend"), factory)
    part = PipelineExecutor._partition_ops(ops, 116)
    assert aimed == [116] and part.linear is reference.linear
    # a green partition's GEMMs stay as its profile timed them: unaimed
    assert PipelineExecutor._partition_ops(ops, 116, capped=False).linear is ops.linear
    assert part.rms_norm is ops.rms_norm and part.backends == ops.backends
    with pytest.raises(ValueError, match="unknown operator"):
        registry.register_on_sms("matmul", "torch", factory)


def test_confined_attention_holds_one_program_per_sm() -> None:
    """Ops.on_sms(n, confined=True): Triton's decode at one program per SM on n SMs (a carve
    plan's attention); a backend that cannot confine its grid (the torch reference) is kept."""
    from kernels.attention.triton_attention import CONFINED_DECODE, TritonAttention

    tri = TritonAttention(torch.device("cpu"))
    conf = tri.confined(24)
    assert (conf.num_sms, conf.decode_config) == (24, CONFINED_DECODE)
    assert CONFINED_DECODE.ctas_per_sm == 1 and not CONFINED_DECODE.tma
    assert tri.on_sms(24).decode_config is None  # sized to the budget, not confined
    ops = get_ops("cpu")
    assert ops.on_sms(24, confined=True).paged_attention is ops.paged_attention
    swapped = replace(ops, paged_attention=tri)
    assert swapped.on_sms(24, confined=True).paged_attention.decode_config == CONFINED_DECODE
