"""Every attention backend against the torch reference: eager on mixed batches, and captured in a
CUDA graph then replayed over batches loaded after the capture (new page tables, new lengths)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from kernel_batches import PagedBatch, make_paged_batch, relative_error
from triton_env import INTERPRET

from kernels import AttentionBackend, AttentionMetadata, attention_backends, get_ops, reference
from kernels.attention import TorchAttention

ON_GPU = torch.cuda.is_available()
HEADS = (32, 8, 128)
# (q_lens, ctx_lens, num_decode): decodes first, a one-token extend among the extends
MIXED = ([1, 1, 1, 33, 1, 70], [1000, 7, 64, 133, 1, 70], 3)
REPLAYED = [
    ([1] * 6, [1, 15, 16, 17, 300, 77], 6),
    ([1] * 5, [500, 3, 64, 33, 129], 5),  # fewer rows: the rest are padding
]


def _backend(name: str, device: str) -> AttentionBackend:
    return get_ops(device, name).paged_attention.fresh()


def _cpu_backends() -> list[str]:
    return ["torch", "triton"] if INTERPRET else ["torch"]


def test_registry_gives_each_runner_its_own_backend_instance() -> None:
    ops = get_ops("cpu")
    assert isinstance(ops.paged_attention, TorchAttention)
    assert ops.fresh().paged_attention is not ops.paged_attention
    assert attention_backends("cpu") == ["torch"]
    with pytest.raises(ValueError, match="not available"):
        get_ops("cpu", "flashinfer")


@pytest.mark.parametrize("name", _cpu_backends())
def test_backend_on_cpu_matches_reference(name: str) -> None:
    if name == "triton":
        pytest.importorskip("triton")
        from kernels.attention.triton_attention import TritonAttention

        backend: AttentionBackend = TritonAttention(torch.device("cpu"))
    else:
        backend = _backend(name, "cpu")
    batch = make_paged_batch(*MIXED, 8, 2, 64, 16, torch.float32, "cpu", seed=3)
    args = (batch.q, batch.k_cache, batch.v_cache, batch.meta, 64**-0.5)
    backend.prepare(batch.meta)
    out = backend.forward(*args)
    torch.testing.assert_close(out, reference.paged_attention(*args), rtol=1e-5, atol=1e-4)


gpu = pytest.mark.skipif(not ON_GPU, reason="needs a CUDA GPU")
GPU_BACKENDS = attention_backends("cuda") if ON_GPU else []


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_backend_eager_mixed_batch(name: str, dtype: torch.dtype) -> None:
    backend = _backend(name, "cuda")
    batch = make_paged_batch(*MIXED, *HEADS, 16, dtype, "cuda", seed=1)
    args = (batch.q, batch.k_cache, batch.v_cache, batch.meta, HEADS[2] ** -0.5)
    expected = reference.paged_attention(*args)
    backend.prepare(batch.meta)
    out = backend.forward(*args)
    assert relative_error(out, expected) < 1e-2
    again = backend.forward(*args)  # the same plan, reused
    assert torch.equal(again, out)
    other = make_paged_batch(*REPLAYED[1], *HEADS, 16, dtype, "cuda", seed=2)
    args2 = (other.q, other.k_cache, other.v_cache, other.meta, HEADS[2] ** -0.5)
    assert relative_error(backend.forward(*args2), reference.paged_attention(*args2)) < 1e-2


class StaticDecode:
    """Buffers a captured decode reads: q, caches, block tables, lengths (bucket of b rows)."""

    def __init__(self, b: int, width: int, num_blocks: int, dtype: torch.dtype) -> None:
        hq, hk, d = HEADS
        self.b, self.width = b, width
        self.q = torch.zeros(b, hq, d, dtype=dtype, device="cuda")
        self.k = torch.zeros(num_blocks, 16, hk, d, dtype=dtype, device="cuda")
        self.v = torch.zeros_like(self.k)
        self.tables = torch.zeros(b, width, dtype=torch.int32, device="cuda")
        self.ctx = torch.ones(b, dtype=torch.int32, device="cuda")
        self.meta = AttentionMetadata(
            cu_seqlens_q=torch.arange(b + 1, dtype=torch.int32, device="cuda"),
            context_lens=self.ctx, block_tables=self.tables,
            slot_mapping=torch.zeros(b, dtype=torch.int64, device="cuda"),
            num_decode_seqs=b, max_query_len=1, max_context_len=width * 16, block_size=16,
        )  # fmt: skip
        self.host_ctx: tuple[int, ...] = (1,) * b

    def load(self, batch: PagedBatch) -> AttentionMetadata:
        n, blocks = batch.q.shape[0], batch.k_cache.shape[0]
        self.q[:n] = batch.q
        self.k[:blocks] = batch.k_cache
        self.v[:blocks] = batch.v_cache
        self.tables.zero_()
        self.tables[:n, : batch.meta.block_tables.shape[1]] = batch.meta.block_tables
        self.ctx.fill_(1)
        self.ctx[:n] = batch.meta.context_lens
        self.host_ctx = (*batch.meta.context_lens_host, *[1] * (self.b - n))
        return dataclasses.replace(
            self.meta, cu_seqlens_q_host=tuple(range(self.b + 1)), context_lens_host=self.host_ctx
        )


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float32])
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_backend_captured_decode_replays_new_batches(name: str, dtype: torch.dtype) -> None:
    backend = _backend(name, "cuda")
    if not backend.supports_cuda_graphs(dtype):
        assert name == "torch"  # loops on the host: the runner runs its batches eagerly
        return
    batches = [make_paged_batch(*spec, *HEADS, 16, dtype, "cuda", seed=10 + i)
               for i, spec in enumerate(REPLAYED)]  # fmt: skip
    static = StaticDecode(8, 40, max(b.k_cache.shape[0] for b in batches), dtype)
    backend.init_cuda_graphs(8, 40)
    static.load(batches[0])
    scale = HEADS[2] ** -0.5
    args = (static.q, static.k, static.v, static.meta, scale)
    backend.forward(*args)  # warm-up, eager: compiles and learns the layout
    backend.prepare_capture(static.meta)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = backend.forward(*args)
    for batch in (*batches, batches[0]):
        loaded = static.load(batch)
        backend.prepare_replay(loaded)
        graph.replay()
        n = batch.q.shape[0]
        expected = reference.paged_attention(
            batch.q, batch.k_cache, batch.v_cache, batch.meta, scale
        )
        assert relative_error(out[:n], expected) < 1e-2, name


def test_flashinfer_hands_what_it_does_not_run_to_its_fallback(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """float32 and head dims FlashInfer has no kernels for (the tiny test models' 16) go to the
    fallback, hooks included. The import needs only the module (a stand-in where it is absent)."""
    import importlib
    import sys
    import types

    if "flashinfer" not in sys.modules:
        try:
            importlib.import_module("flashinfer")
        except ImportError:
            monkeypatch.setitem(sys.modules, "flashinfer", types.ModuleType("flashinfer"))
    from kernels.attention.flashinfer_attention import FlashInferAttention

    backend = FlashInferAttention(torch.device("cpu"))
    backend.fallback = TorchAttention(torch.device("cpu"))
    for dtype, head_dim in ((torch.float32, 64), (torch.bfloat16, 16)):
        batch = make_paged_batch(*MIXED, 4, 2, head_dim, 16, dtype, "cpu", seed=head_dim)
        assert not backend.runs(batch.q)
        args = (batch.q, batch.k_cache, batch.v_cache, batch.meta, head_dim**-0.5)
        backend.prepare(batch.meta)
        assert torch.equal(backend.forward(*args), reference.paged_attention(*args))
        assert backend.layout is None and not backend.slots
        backend.prepare_capture(batch.meta)  # the fallback's hooks: nothing planned here
    q = torch.zeros(1, 4, 128, dtype=torch.bfloat16)
    assert backend.runs(q)


@pytest.mark.gpu
@gpu
@pytest.mark.parametrize("name", GPU_BACKENDS)
def test_backend_captures_a_1024_decode_bucket_at_the_longest_context(name: str) -> None:
    """The largest bucket an engine with --max-num-seqs 1024 captures, planned for contexts up
    to 4,096 tokens: FlashInfer's split-KV buffers then need 335 MB, more than its first 128 MiB
    workspace (the H200 fp8 engine failed its capture there), so the backend grows the
    workspace before the capture; the replay of a real batch matches the reference."""
    backend = _backend(name, "cuda")
    if not backend.supports_cuda_graphs(torch.bfloat16):
        assert name == "torch"  # loops on the host: the runner runs its batches eagerly
        return
    b, width = 1024, 256
    gen = torch.Generator().manual_seed(7)
    lens = torch.randint(1, 65, (b,), generator=gen).tolist()
    batch = make_paged_batch([1] * b, lens, b, *HEADS, 16, torch.bfloat16, "cuda", seed=8)
    static = StaticDecode(b, width, batch.k_cache.shape[0], torch.bfloat16)
    backend.init_cuda_graphs(b, width)
    scale = HEADS[2] ** -0.5
    args = (static.q, static.k, static.v, static.meta, scale)
    backend.forward(*args)  # warm-up, eager
    backend.prepare_capture(static.meta)
    torch.cuda.synchronize()
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph):
        out = backend.forward(*args)
    backend.prepare_replay(static.load(batch))
    graph.replay()
    expected = reference.paged_attention(batch.q, batch.k_cache, batch.v_cache, batch.meta, scale)
    assert relative_error(out, expected) < 1e-2, name
