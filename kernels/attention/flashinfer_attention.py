"""FlashInfer's paged decode / prefill attention as a backend (importing fails without flashinfer).

Eager batches: the decodes go to the batch-decode wrapper and the rest to the causal batch-prefill
wrapper (FlashInfer aligns a chunk's queries to the end of its KV, which is the metadata's
convention). A plan is made on the host once per metadata object and kept in one of a few slots,
each with its own wrappers and workspace, so the batch planned next (asynchronous scheduling) or
another nano-batch of the same forward never overwrites a plan the device has yet to use. Before a
slot is planned again, the host waits for the event recorded after that slot's last plan: its
pinned staging buffer has then been copied to the device. The slots (``Slots``) also plan the
extend rows alone for the "flashinfer-prefill" backend (kernels.attention.flashinfer_prefill),
whose decodes run on Triton.

CUDA graphs: per bucket, a decode wrapper in FlashInfer's CUDA-graph mode over static indptr /
page-index / last-page-length buffers. ``prepare_capture`` plans it before the capture;
``prepare_replay`` plans it again with the batch about to be replayed, which rewrites those buffers
and the split schedule that the captured kernels read.

Only fp16 / bf16 with head dims 64, 128 or 256 run on FlashInfer (what its kernels are built
for); other dtypes and head dims go to the Triton backend (the torch reference when triton is
missing), hooks included.
"""

from __future__ import annotations

from dataclasses import dataclass
from fractions import Fraction
from typing import Any

import flashinfer
import torch

from kernels.attention.base import AttentionBackend
from kernels.attention.torch_attention import TorchAttention
from kernels.decode_choice import DecodeChoice
from kernels.host_copy import to_device
from kernels.metadata import AttentionMetadata

WORKSPACE_BYTES = 128 << 20  # a workspace's first size; doubled while a plan overflows it
MAX_WORKSPACE_BYTES = 4 << 30
NUM_SLOTS = 4  # plans kept at once: the running batch, the next one, pipeline nano-batches
DTYPES = (torch.float16, torch.bfloat16)
HEAD_DIMS = (64, 128, 256)


def _fallback(device: torch.device) -> AttentionBackend:
    try:
        from kernels.attention.triton_attention import TritonAttention
    except ImportError:
        return TorchAttention(device)
    return TritonAttention(device)


def capturing(device: torch.device) -> bool:
    """Whether a CUDA graph is being captured on the current stream (never off CUDA)."""
    return device.type == "cuda" and torch.cuda.is_current_stream_capturing()


def _overflowed(err: RuntimeError) -> bool:
    """Whether FlashInfer's planner ran out of float workspace (its split-KV buffers grow with
    the batch: 1,024 decodes of Llama-3-8B in CUDA-graph mode ask for 335 MB)."""
    return "Increase the workspace buffer size" in str(err)


def _bigger(workspace: torch.Tensor, err: RuntimeError) -> torch.Tensor:
    """A workspace twice ``workspace``'s size, or ``err`` again when that cannot help."""
    size = 2 * workspace.numel()
    if not _overflowed(err) or size > MAX_WORKSPACE_BYTES:
        raise err
    return torch.empty(size, dtype=torch.uint8, device=workspace.device)


@dataclass(frozen=True)
class Pages:
    """FlashInfer's CSR view of some sequences' pages."""

    indptr: torch.Tensor  # [n + 1] int32, host
    indices: torch.Tensor  # [pages] int32, device
    last_len: torch.Tensor  # [n] int32, host: tokens in each sequence's last page


def pages(meta: AttentionMetadata, first: int, last: int) -> Pages:
    """Pages of sequences first..last-1, gathered from the device block tables (no host sync)."""
    ctx = meta.context_lens_host or tuple(meta.context_lens.tolist())
    bs = meta.block_size
    counts = [(c + bs - 1) // bs for c in ctx[first:last]]
    n = torch.tensor(counts, dtype=torch.long)
    indptr = torch.cat([torch.zeros(1, dtype=torch.long), n.cumsum(0)])
    rows = torch.repeat_interleave(torch.arange(first, last), n)  # sequence of each page
    cols = torch.arange(int(indptr[-1])) - torch.repeat_interleave(indptr[:-1], n)
    device = meta.block_tables.device
    indices = meta.block_tables[to_device(rows, device), to_device(cols, device)]
    last_len = [c - (k - 1) * bs for c, k in zip(ctx[first:last], counts, strict=True)]
    return Pages(indptr.to(torch.int32), indices, torch.tensor(last_len, dtype=torch.int32))


@dataclass(frozen=True)
class Layout:
    """What a plan depends on besides the batch: taken from the forward's arguments."""

    num_heads: int
    num_kv_heads: int
    head_dim: int
    page: int
    dtype: torch.dtype
    scale: float
    kv_dtype: torch.dtype | None = None  # the cache's (float8 or the queries' dtype)

    @staticmethod
    def of(q: torch.Tensor, k_cache: torch.Tensor, scale: float) -> Layout:
        return Layout(q.shape[1], k_cache.shape[2], q.shape[2], k_cache.shape[1], q.dtype, scale,
                      k_cache.dtype)  # fmt: skip

    @property
    def tensor_cores(self) -> bool:
        return self.num_heads // self.num_kv_heads >= 4

    def decode_plan(self, wrapper: Any, p: Pages) -> None:
        wrapper.plan(p.indptr, p.indices, p.last_len, self.num_heads, self.num_kv_heads,
                     self.head_dim, self.page, q_data_type=self.dtype,
                     kv_data_type=self.kv_dtype or self.dtype,
                     sm_scale=self.scale)  # fmt: skip

    def prefill_plan(self, wrapper: Any, qo_indptr: torch.Tensor, p: Pages) -> None:
        wrapper.plan(qo_indptr, p.indptr, p.indices, p.last_len, self.num_heads,
                     self.num_kv_heads, self.head_dim, self.page, causal=True,
                     q_data_type=self.dtype, kv_data_type=self.kv_dtype or self.dtype,
                     sm_scale=self.scale)  # fmt: skip


@dataclass
class Plan:
    meta: AttentionMetadata  # the batch planned for (matched by identity)
    layout: Layout
    decode: Any = None  # a planned BatchDecodeWithPagedKVCacheWrapper, if the batch has decodes
    prefill: Any = None  # a planned BatchPrefillWithPagedKVCacheWrapper, if it has extends

    def run(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        out: torch.Tensor,
        k_scale: float = 1.0,
        v_scale: float = 1.0,
    ) -> None:
        """Run the planned wrappers into ``out``'s rows: the decode one over the first
        num_decode_seqs rows of q (contiguous), the prefill one over the rest; rows of a part
        not planned here are left as they are. A float8 cache holds k / k_scale and
        v / v_scale: FlashInfer applies the scales."""
        nd = self.meta.num_decode_seqs
        scales = {"k_scale": k_scale, "v_scale": v_scale} if k_cache.element_size() == 1 else {}
        if self.decode is not None:
            self.decode.run(q[:nd], (k_cache, v_cache), out=out[:nd], **scales)
        if self.prefill is not None:
            self.prefill.run(q[nd:], (k_cache, v_cache), out=out[nd:], **scales)


class Slot:
    """Wrappers sharing one workspace; holds one plan at a time."""

    def __init__(self, device: torch.device) -> None:
        self.workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        self.wrappers: dict[tuple[str, bool], Any] = {}
        self.plan: Plan | None = None
        self.planned: torch.cuda.Event | None = None  # recorded after the last plan's copies

    def wrapper(self, kind: str, tensor_cores: bool) -> Any:
        key = (kind, tensor_cores)
        if key not in self.wrappers:
            if kind == "decode":
                self.wrappers[key] = flashinfer.BatchDecodeWithPagedKVCacheWrapper(
                    self.workspace, "NHD", use_tensor_cores=tensor_cores
                )
            else:
                self.wrappers[key] = flashinfer.BatchPrefillWithPagedKVCacheWrapper(
                    self.workspace, "NHD"
                )
        return self.wrappers[key]

    def make_plan(self, meta: AttentionMetadata, layout: Layout, decode: bool = True) -> Plan:
        """Plan ``meta``'s decode rows (unless ``decode`` is False: they run elsewhere) and its
        extend rows in this slot, in place of the plan it held."""
        if self.planned is not None:
            self.planned.synchronize()  # the staging buffer's last copy has left the host
        while True:
            try:
                plan = self._planned(meta, layout, decode)
                break
            except RuntimeError as err:  # a larger workspace and fresh wrappers over it
                self.workspace, self.wrappers = _bigger(self.workspace, err), {}
        if self.workspace.is_cuda:  # elsewhere (the CPU tests' stand-in) nothing is in flight
            self.planned = torch.cuda.Event()
            self.planned.record()
        self.plan = plan
        return plan

    def _planned(self, meta: AttentionMetadata, layout: Layout, decode: bool) -> Plan:
        nd, n = meta.num_decode_seqs, meta.num_seqs
        plan = Plan(meta, layout)
        if decode and nd > 0:
            plan.decode = self.wrapper("decode", layout.tensor_cores)
            layout.decode_plan(plan.decode, pages(meta, 0, nd))
        if n > nd:
            cu = meta.cu_seqlens_q_host or tuple(meta.cu_seqlens_q.tolist())
            qo_indptr = torch.tensor([c - cu[nd] for c in cu[nd:]], dtype=torch.int32)
            plan.prefill = self.wrapper("prefill", False)
            layout.prefill_plan(plan.prefill, qo_indptr, pages(meta, nd, n))
        return plan


class Slots:
    """NUM_SLOTS slots used in turn: a batch's plan is found by its metadata object, a batch not
    yet planned is planned in the next slot (the oldest plan's). ``decode=False`` plans the
    extend rows alone (a backend whose decodes run on other kernels)."""

    def __init__(self, device: torch.device, decode: bool = True) -> None:
        self.device = torch.device(device)
        self.decode = decode
        self.slots: list[Slot] = []
        self.next_slot = 0

    def __len__(self) -> int:
        return len(self.slots)

    def find(self, meta: AttentionMetadata) -> Plan | None:
        """The plan held for ``meta`` (the same object), if any."""
        return next((s.plan for s in self.slots if s.plan is not None and s.plan.meta is meta),
                    None)  # fmt: skip

    def plan(self, meta: AttentionMetadata, layout: Layout) -> Plan:
        """``meta``'s plan for ``layout``: the one held, else one made now in the next slot.
        Making one inside a CUDA-graph capture is an error (plan before the capture)."""
        found = self.find(meta)
        if found is not None and found.layout == layout:
            return found
        if capturing(self.device):
            raise RuntimeError(
                "FlashInfer attention met a batch it had not planned while capturing a CUDA "
                "graph: plan with prepare_capture(meta) before the capture"
            )
        if len(self.slots) < NUM_SLOTS:
            self.slots.append(Slot(self.device))
        slot = self.slots[self.next_slot % len(self.slots)]
        self.next_slot += 1
        return slot.make_plan(meta, layout, self.decode)


class GraphState:
    """Static buffers and one CUDA-graph decode wrapper per bucket size."""

    def __init__(self, device: torch.device, max_batch_size: int, max_blocks: int) -> None:
        self.workspace = torch.empty(WORKSPACE_BYTES, dtype=torch.uint8, device=device)
        self.indptr = torch.zeros(max_batch_size + 1, dtype=torch.int32, device=device)
        self.indices = torch.zeros(max_batch_size * max_blocks, dtype=torch.int32, device=device)
        self.last_len = torch.ones(max_batch_size, dtype=torch.int32, device=device)
        self.plans: dict[int, Plan] = {}  # bucket size -> its plan (the wrapper the graph runs)
        self.planned: dict[int, torch.cuda.Event] = {}

    def wrapper(self, b: int, layout: Layout) -> Any:
        return flashinfer.BatchDecodeWithPagedKVCacheWrapper(
            self.workspace, "NHD", use_cuda_graph=True, use_tensor_cores=layout.tensor_cores,
            paged_kv_indptr_buffer=self.indptr[: b + 1], paged_kv_indices_buffer=self.indices,
            paged_kv_last_page_len_buffer=self.last_len[:b],
        )  # fmt: skip

    def plan_bucket(self, b: int, meta: AttentionMetadata, layout: Layout) -> None:
        """Make and plan bucket ``b``'s wrapper before its capture, growing the shared workspace
        while the plan overflows it. Growing is only safe before any other bucket is planned
        (a captured graph keeps the old workspace's address), which capturing the largest
        bucket first ensures. A bucket's graphs (one per plan) share its wrapper, so the
        replan before a replay updates what every one of them reads."""
        while True:
            if b not in self.plans or self.plans[b].layout != layout:
                self.plans[b] = Plan(meta, layout, decode=self.wrapper(b, layout))
            try:
                self.replan(b, meta)
                return
            except RuntimeError as err:
                if _overflowed(err) and set(self.plans) != {b}:
                    raise RuntimeError(
                        f"FlashInfer's CUDA-graph workspace ({self.workspace.numel()} bytes) is "
                        f"too small for {b} decodes, planned after larger buckets: capture the "
                        "largest bucket first"
                    ) from err
                self.workspace = _bigger(self.workspace, err)  # or err again
                del self.plans[b]  # its wrapper holds the old workspace

    def replan(self, b: int, meta: AttentionMetadata) -> None:
        plan = self.plans[b]
        if b in self.planned:
            self.planned[b].synchronize()
        plan.layout.decode_plan(plan.decode, pages(meta, 0, b))
        self.planned[b] = torch.cuda.Event()
        self.planned[b].record()


class FlashInferAttention(AttentionBackend):
    name = "flashinfer"

    def __init__(self, device: torch.device, fallback: AttentionBackend | None = None) -> None:
        super().__init__(device)
        # for what FlashInfer does not run (its decode choice, if any, is the engine's)
        self.fallback = fallback if fallback is not None else _fallback(self.device)
        self.slots = Slots(self.device)
        self.layout: Layout | None = None  # from the first forward FlashInfer runs (else None)
        self.graphs: GraphState | None = None

    def fresh(self) -> FlashInferAttention:
        return FlashInferAttention(self.device, self.fallback.fresh())

    def with_decode(self, choice: DecodeChoice) -> FlashInferAttention:
        """FlashInfer's own kernels have no decode choice; the fallback's take ``choice``."""
        return FlashInferAttention(self.device, self.fallback.with_decode(choice))

    def decode_context_ratio(self, q_dtype: torch.dtype, k_cache: torch.Tensor) -> Fraction | None:
        if q_dtype in DTYPES and k_cache.shape[-1] in HEAD_DIMS:
            return None  # FlashInfer's decode: one plan whatever the contexts
        return self.fallback.decode_context_ratio(q_dtype, k_cache)

    def supports_cuda_graphs(self, dtype: torch.dtype) -> bool:
        return dtype in DTYPES or self.fallback.supports_cuda_graphs(dtype)

    @staticmethod
    def runs(q: torch.Tensor) -> bool:
        """Whether FlashInfer computes a forward of q [T, Hq, D] (else the fallback does)."""
        return q.dtype in DTYPES and q.shape[-1] in HEAD_DIMS

    def _plan(self, meta: AttentionMetadata, layout: Layout) -> Plan:
        if self.graphs is not None:  # first: a bucket's warm-up also left an eager plan
            plans = self.graphs.plans.values()
            found = next((p for p in plans if p.meta is meta and p.layout == layout), None)
            if found is not None:
                return found
        return self.slots.plan(meta, layout)

    def prepare(self, meta: AttentionMetadata) -> None:
        if self.layout is not None:
            self._plan(meta, self.layout)
        else:
            self.fallback.prepare(meta)

    def forward(
        self,
        q: torch.Tensor,
        k_cache: torch.Tensor,
        v_cache: torch.Tensor,
        meta: AttentionMetadata,
        scale: float,
        k_scale: float = 1.0,
        v_scale: float = 1.0,
    ) -> torch.Tensor:
        if not self.runs(q):
            return self.fallback.forward(q, k_cache, v_cache, meta, scale, k_scale, v_scale)
        q = q.contiguous()
        self.layout = Layout.of(q, k_cache, scale)
        plan = self._plan(meta, self.layout)
        out = torch.empty_like(q)
        plan.run(q, k_cache, v_cache, out, k_scale, v_scale)
        return out

    # CUDA graphs
    def init_cuda_graphs(self, max_batch_size: int, max_blocks_per_seq: int) -> None:
        self.graphs = GraphState(self.device, max_batch_size, max_blocks_per_seq)
        self.fallback.init_cuda_graphs(max_batch_size, max_blocks_per_seq)

    def prepare_capture(self, meta: AttentionMetadata) -> None:
        if self.layout is None:
            self.fallback.prepare_capture(meta)
            return
        assert self.graphs is not None, "init_cuda_graphs first"
        assert meta.num_decode_seqs == meta.num_seqs, "CUDA graphs hold decode-only batches"
        self.graphs.plan_bucket(meta.num_seqs, meta, self.layout)

    def prepare_replay(self, meta: AttentionMetadata) -> None:
        if self.layout is None:
            self.fallback.prepare_replay(meta)
            return
        assert self.graphs is not None
        self.graphs.replan(meta.num_seqs, meta)


def available(device: torch.device) -> bool:
    return device.type == "cuda" and torch.cuda.is_available()
