"""NANOLANG_KV_ORDER=longest: decode work items handed out longest context first. The order is a
permutation of the rows, so the output must be exactly the batch-order output; the Triton
backend makes the order once per batch (host lengths) and, for decode CUDA graphs, refills a
buffer per captured batch size at each replay."""

from __future__ import annotations

import dataclasses

import pytest
import torch

pytest.importorskip("triton")
from kernel_batches import make_paged_batch
from triton_env import DEVICE, INTERPRET, needs_triton_device

from kernels.attention.triton_attention import TritonAttention, longest_first
from kernels.decode_choice import DecodeChoice
from kernels.triton.decode_attention import DecodeConfig, decode_attention
from kernels.triton.paged_common import kv_order

CTX = [37, 1400, 5, 700, 1400, 64]  # ties (1400) keep batch order


def _batch(ctx: list[int] = CTX):  # type: ignore[no-untyped-def]
    dtype = torch.float32 if INTERPRET else torch.bfloat16
    return make_paged_batch([1] * len(ctx), ctx, len(ctx), 8, 2, 64, 16, dtype, DEVICE, 31)


def test_longest_first_is_a_stable_descending_order() -> None:
    assert longest_first(CTX).tolist() == [1, 4, 3, 5, 0, 2]
    assert longest_first(CTX).dtype == torch.int32


@needs_triton_device
@pytest.mark.parametrize(("num_sms", "max_context_len"), [(None, None), (4, None), (None, 8192)])
def test_an_order_changes_nothing_in_the_output(
    num_sms: int | None, max_context_len: int | None
) -> None:
    """Batch order against longest first: the same bits, on a full grid, a persistent grid and a
    split plan made for a far longer context (as a CUDA graph's)."""
    b = _batch()
    m = b.meta
    order = longest_first(CTX).to(DEVICE)
    outs = []
    for o in (None, order):
        out = torch.empty_like(b.q)
        decode_attention(b.q, b.k_cache, b.v_cache, m.block_tables, m.context_lens,
                         max_context_len or m.max_context_len, 0.125, out, num_sms=num_sms,
                         config=DecodeConfig(32, 4, 2), order=o)  # fmt: skip
        outs.append(out)
    assert not torch.isnan(outs[0]).any()
    assert torch.equal(outs[0], outs[1])


def test_the_backend_orders_each_batch_once_and_refills_a_graph_buffer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cpu = torch.device("cpu")
    monkeypatch.setenv("NANOLANG_KV_ORDER", "batch")
    assert TritonAttention(cpu)._decode_order(_batch().meta) is None  # batch order: no order
    monkeypatch.delenv("NANOLANG_KV_ORDER")
    backend = TritonAttention(cpu, choice=DecodeChoice())  # the default: longest first
    meta = make_paged_batch([1] * 6, CTX, 6, 8, 2, 64, 16, torch.float32, "cpu", 3).meta
    first = backend._decode_order(meta)
    assert first is not None and first.tolist() == [1, 4, 3, 5, 0, 2]
    assert backend._decode_order(meta) is first  # once per batch, not once per layer
    one = make_paged_batch([1], [9], 1, 8, 2, 64, 16, torch.float32, "cpu", 3).meta
    assert backend._decode_order(one) is None  # a single row has nothing to order
    # a graph bucket of 6 rows: a buffer made at capture, refilled from each replay's lengths
    graph_meta = dataclasses.replace(meta, cu_seqlens_q_host=(), context_lens_host=())
    backend.prepare_capture(graph_meta)
    buffer = backend._graph_orders[6]
    assert buffer.tolist() == list(range(6))
    backend.prepare_replay(dataclasses.replace(meta, context_lens_host=(5, 6, 7, 8, 9, 1)))
    assert buffer.tolist() == [4, 3, 2, 1, 0, 5]
    assert backend._graph_orders[6] is buffer  # the captured kernels keep reading this one


@needs_triton_device
def test_the_backends_output_is_the_same_in_either_order(monkeypatch: pytest.MonkeyPatch) -> None:
    b = _batch()
    monkeypatch.setenv("NANOLANG_KV_ORDER", "batch")
    plain = TritonAttention(torch.device(DEVICE)).forward(b.q, b.k_cache, b.v_cache, b.meta, 0.125)
    monkeypatch.setenv("NANOLANG_KV_ORDER", "longest")
    backend = TritonAttention(torch.device(DEVICE))
    ordered = backend.forward(b.q, b.k_cache, b.v_cache, b.meta, 0.125)
    assert backend._order[1] is not None
    assert torch.equal(plain, ordered)


def test_nanolang_kv_order_is_checked(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NANOLANG_KV_ORDER", raising=False)
    assert kv_order() == "longest"
    monkeypatch.setenv("NANOLANG_KV_ORDER", "shortest")
    with pytest.raises(ValueError, match="NANOLANG_KV_ORDER='shortest': choose batch or longest"):
        TritonAttention(torch.device("cpu"))


def test_the_tma_kernel_takes_the_order_too() -> None:
    if INTERPRET or not torch.cuda.is_available() or torch.cuda.get_device_capability()[0] < 9:
        pytest.skip("TMA page copies need a Hopper-class GPU")
    from kernels.triton.decode_attention_tma import decode_attention_tma

    b = _batch()
    m = b.meta
    outs = []
    for o in (None, longest_first(CTX).to(DEVICE)):
        out = torch.empty_like(b.q)
        cfg = DecodeConfig(32, 4, 2, tma=True)
        decode_attention_tma(b.q, b.k_cache, b.v_cache, m.block_tables, m.context_lens, 8192,
                             0.125, out, config=cfg, order=o)  # fmt: skip
        outs.append(out)
    assert torch.equal(outs[0], outs[1])
