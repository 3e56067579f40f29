"""CUDA graphs for decode-only iterations, captured once per batch-size bucket.

A decode iteration is the same kernel sequence every time, only its inputs change: the graph of
the bucket that fits the batch is replayed over static input buffers. Rows beyond the batch are
padding: they read one token and write their K/V into a scratch block that no sequence owns.
Attention is captured for the longest context (``max_model_len``), so the graph stays valid as
contexts grow; the kernels read the real lengths from the device at run time. Attention backends
that plan on the host (FlashInfer) get the backend's hooks: ``prepare_capture`` before each capture
and ``prepare_replay`` with the loaded batch before each replay, both outside the capture.

A pipeline forward may run different plans for one batch size at different mean contexts (a
plan set's context buckets). A captured forward has no host lengths to choose with, so graphs
are keyed by (batch size, plan): each batch size is captured once per distinct plan its decode
batches run over the context buckets (once when they all agree, the usual case), each fixed to
that plan, and a loaded batch replays the graph of the plan its real mean context picks.

The "by-context" decode choice (the default; kernels.decode_choice) runs one kernel on decode
batches of near-uniform contexts and another on ragged ones, which a captured graph cannot choose
at replay. Where the attention backend says its kernel depends on that, and by which uniform-context
ratio (``decode_context_ratio``: the decode choice's, e.g. ``by-context@1.05``), every (batch
size, plan) is captured twice, its plan wrapped in a ``ContextVariant`` fixed to uniform or
ragged contexts (twice the decode graphs: twice the capture time, and the graphs' own memory,
the shared pool aside), and ``key_for`` picks the variant from the loaded rows' real lengths by
that ratio. Every other choice captures as before. Under tensor parallelism every rank runs the
driver's plan and picks from its integer context lengths by exact arithmetic and the same
configured ratio, so all ranks replay the same variant.

A plan guard (runtime.pipeline.guard) steers the graph: for a guarded bucket the forward names a
turn per loaded batch (the plan, or dense: its batch size's dense graph is captured too), and the
replay is timed through the forward's ``timed``.
"""

from __future__ import annotations

import logging
import os
from collections import Counter
from collections.abc import Callable, Hashable, Iterable, Sequence
from dataclasses import dataclass, replace
from fractions import Fraction
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

import numpy as np
import torch

from kernels import AttentionMetadata, Ops
from kernels.decode_choice import contexts_uniform, ratio_text
from runtime.host_copy import pinned
from runtime.model.llama import ForwardContext, LlamaModel

if TYPE_CHECKING:
    from runtime.pipeline.guard import Turn

logger = logging.getLogger("runtime")
R = TypeVar("R")

Forward = Callable[[torch.Tensor, ForwardContext], torch.Tensor]
GraphKey = tuple[int, Hashable]  # (batch size, the plan its forward runs; None: dense)


@runtime_checkable
class DecodeVariants(Protocol):
    """A forward that may run different plans for one decode batch size (PipelineForward)."""

    def graph_variants(self, decodes: int) -> dict[Any, Forward]:
        """Each distinct plan of decode batches of this size, with a forward fixed to it."""
        ...

    def graph_key(self, decodes: int, context: float) -> Hashable:
        """The plan a decode batch of this size and mean context runs."""
        ...

    def decode_turn(self, decodes: int, context: float, mode: str = "graph") -> Turn | None:
        """A plan guard's turn for a loaded batch (plan or dense; None: no guard here) whose
        graph is of kind ``mode`` (its attention variant)."""
        ...

    def timed(self, turn: Turn | None, run: Callable[[], R]) -> R:
        """``run()`` (the replay), timed for the guard when ``turn`` is a trial's."""
        ...


@dataclass(frozen=True)
class ContextVariant:
    """The graph of a plan fixed to decode rows of near-uniform (``uniform``) or ragged contexts,
    for an attention backend whose decode kernel depends on that ("by-context")."""

    plan: Hashable  # the plan the forward runs (None: dense)
    uniform: bool

    def __str__(self) -> str:
        plan = "dense" if self.plan is None else str(self.plan)
        return f"{plan}, {'uniform' if self.uniform else 'ragged'} contexts"


def fixed_contexts(forward: Forward, uniform: bool) -> Forward:
    """``forward`` with the attention metadata saying the decode contexts are (not) uniform."""

    def run(input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        attn = replace(ctx.attn, decode_contexts_uniform=uniform)
        return forward(input_ids, replace(ctx, attn=attn))

    return run


@dataclass(frozen=True)
class OneForward:
    """The same forward at every context (the dense model's)."""

    forward: Forward

    def graph_variants(self, decodes: int) -> dict[Any, Forward]:
        return {None: self.forward}

    def graph_key(self, decodes: int, context: float) -> Hashable:
        return None

    def decode_turn(self, decodes: int, context: float, mode: str = "graph") -> Turn | None:
        return None

    def timed(self, turn: Turn | None, run: Callable[[], R]) -> R:
        return run()


def capture_summary(keys: Iterable[GraphKey]) -> str:
    """The captured graphs by what they run: the batch sizes of the dense forward, then of each
    plan (a by-context variant counted as its plan)."""
    sizes: dict[str, set[int]] = {}
    for b, plan in keys:
        inner = plan.plan if isinstance(plan, ContextVariant) else plan
        sizes.setdefault("dense" if inner is None else f"plan {inner}", set()).add(b)
    names = sorted(sizes, key=lambda n: (n != "dense", n))
    return "; ".join(f"{n} for batch sizes {sorted(sizes[n])}" for n in names) or "none"


def default_buckets(max_num_seqs: int) -> list[int]:
    sizes = [1, 2, 4, 8, 16, 24, 32, *range(48, 257, 16), *range(288, 1025, 32)]
    return sorted({min(s, max_num_seqs) for s in sizes})


@dataclass
class DecodeInputs:
    """Host-side (CPU) tensors of one decode batch of ``n`` sequences."""

    input_ids: torch.Tensor  # [n] int64
    positions: torch.Tensor  # [n] int64
    slot_mapping: torch.Tensor  # [n] int64
    context_lens: torch.Tensor  # [n] int32
    block_tables: torch.Tensor  # [n, w] int32
    # rows whose input token the previous iteration sampled on the device, and their rows in
    # that iteration's tokens (uploaded with the rest; ``DecodeGraphs.patch_indices``)
    patch_rows: Sequence[int] = ()
    patch_src: Sequence[int] = ()


def _timing_event() -> torch.cuda.Event | None:
    """A timing event recorded on the current stream now (None without CUDA)."""
    if not torch.cuda.is_available():
        return None
    event = torch.cuda.Event(enable_timing=True)
    event.record()
    return event


def separate_copies() -> bool:
    """``NANOLANG_DECODE_COPIES=separate``: a loaded batch's inputs go up in one copy per tensor
    plus fills of the padding rows, as before 2026-12-01 (for an A/B); ``one`` (the default):
    the rows' metadata in one copy and their block tables in another."""
    value = os.environ.get("NANOLANG_DECODE_COPIES", "one")
    if value not in ("one", "separate"):
        raise ValueError(f"NANOLANG_DECODE_COPIES must be 'one' or 'separate', got {value!r}")
    return value == "separate"


class RowStaging:
    """Static device buffers of a decode graph's per-row inputs in one allocation, so that a
    loaded batch's metadata goes up in one copy: five int64 fields (input ids, positions, KV
    slots, and the patch's destination and source rows) then the int32 context lengths, each
    ``rows`` long and starting 256 bytes apart. Rows past a batch hold padding: token 0 at
    position 0, writing its K/V into the scratch block, with a context of one token."""

    FIELDS = ("input_ids", "positions", "slot_mapping", "patch_dst", "patch_src")

    ALIGN = 32  # elements of a field's row: every field starts 256 bytes apart (kernels' pointers)

    def __init__(self, rows: int, scratch_slot: int, device: torch.device) -> None:
        self.rows, self.scratch_slot = rows, scratch_slot
        self.stride = -(-rows // self.ALIGN) * self.ALIGN
        self.wide_bytes = len(self.FIELDS) * self.stride * 8
        self.nbytes = self.wide_bytes + self.stride * 4
        self.buffer = torch.zeros(self.nbytes, dtype=torch.uint8, device=device)
        self.wide = self.buffer[: self.wide_bytes].view(torch.int64).view(-1, self.stride)
        self.context_lens = self.buffer[self.wide_bytes :].view(torch.int32)[:rows]
        self.upload(self.host(DecodeInputs(*(torch.zeros(0, dtype=torch.int64),) * 3,
                                           torch.zeros(0, dtype=torch.int32),
                                           torch.zeros(0, 0, dtype=torch.int32))))  # fmt: skip

    def field(self, name: str) -> torch.Tensor:
        return self.wide[self.FIELDS.index(name), : self.rows]

    def host(self, inputs: DecodeInputs) -> np.ndarray:
        """The buffer's bytes for ``inputs`` (their rows first, then padding rows)."""
        n, k, rows = inputs.input_ids.shape[0], len(inputs.patch_rows), self.rows
        assert n <= rows and k <= n, f"{n} rows (patching {k}) in a staging of {rows}"
        out = np.empty(self.nbytes, dtype=np.uint8)
        wide = out[: self.wide_bytes].view(np.int64).reshape(-1, self.stride)
        wide[:, n:] = 0
        wide[3:, k:n] = 0
        wide[0, :n] = inputs.input_ids.numpy()
        wide[1, :n] = inputs.positions.numpy()
        wide[2, :n] = inputs.slot_mapping.numpy()
        wide[2, n:] = self.scratch_slot
        wide[3, :k] = inputs.patch_rows
        wide[4, :k] = inputs.patch_src
        lens = out[self.wide_bytes :].view(np.int32)
        lens[:n] = inputs.context_lens.numpy()
        lens[n:] = 1
        return out

    def upload(self, host: np.ndarray) -> None:
        """One copy in stream order (from pinned memory on a GPU; the host never waits)."""
        src = torch.from_numpy(host)
        self.buffer.copy_(pinned(src) if self.buffer.is_cuda else src, non_blocking=True)


class DecodeGraphs:
    def __init__(
        self,
        model: LlamaModel,
        ops: Ops,
        kv_caches: list[tuple[torch.Tensor, torch.Tensor]],
        scratch_block: int,
        block_size: int,
        max_model_len: int,
        buckets: list[int],
        forward: Forward | None = None,
    ) -> None:
        self.model, self.ops, self.kv_caches = model, ops, kv_caches
        # a pipeline's forward, or the plain dense one
        fwd = forward or model
        self.variants = fwd if isinstance(fwd, DecodeVariants) else OneForward(fwd)
        # "by-context" decode attention: each (batch size, plan) once per context shape, a loaded
        # batch classed by the decode choice's ratio (None: one graph whatever the contexts)
        self.uniform_ratio: Fraction | None = ops.paged_attention.decode_context_ratio(
            model.embed_tokens.dtype, kv_caches[0][0]
        )
        # what gets captured: a forward per (batch size, plan)
        self.forwards: dict[GraphKey, Forward] = {
            (b, key): f
            for b in buckets
            for plan, forward in self.variants.graph_variants(b).items()
            for key, f in self._context_variants(plan, forward)
        }
        self.loaded: GraphKey | None = None  # the graph of the loaded batch
        self.turn: Turn | None = None  # the plan guard's turn for it (None: unguarded)
        self.block_size, self.max_model_len = block_size, max_model_len
        self.scratch_block = scratch_block
        self.buckets = buckets
        device = model.embed_tokens.device
        n, width = max(buckets), -(-max_model_len // block_size)
        self.separate_copies = separate_copies()
        self.staging = RowStaging(n, scratch_block * block_size, device)
        self.input_ids = self.staging.field("input_ids")
        self.positions = self.staging.field("positions")
        self.slot_mapping = self.staging.field("slot_mapping")
        self.context_lens = self.staging.context_lens
        self.block_tables = torch.full((n, width), scratch_block, dtype=torch.int32, device=device)
        self.cu_seqlens = torch.arange(n + 1, dtype=torch.int32, device=device)
        self.context_lens_host: tuple[int, ...] = ()  # of the loaded batch, padded to its bucket
        self.metas = {b: self._metadata(b) for b in buckets}  # one object per bucket, reused
        self.attention = ops.paged_attention
        self.attention.init_cuda_graphs(n, width)
        self.graphs: dict[GraphKey, torch.cuda.CUDAGraph] = {}
        self.logits: dict[GraphKey, torch.Tensor] = {}  # views of logits_buf
        self.logits_buf: torch.Tensor | None = None  # made by the first capture
        self.pool: Any = None  # the graphs' shared memory pool, set by the first capture
        self.replays: Counter[GraphKey] = Counter()  # replays per graph since start-up
        # the last replay's timing events, around the graph's launch alone (None: not CUDA)
        self.replay_events: tuple[torch.cuda.Event, torch.cuda.Event] | None = None

    @property
    def by_context(self) -> bool:
        """Whether each (batch size, plan) is captured for uniform and for ragged contexts."""
        return self.uniform_ratio is not None

    def _context_variants(self, plan: Hashable, forward: Forward) -> list[tuple[Hashable, Forward]]:
        """The plan's graphs: itself, or a uniform and a ragged one under "by-context"."""
        if not self.by_context:
            return [(plan, forward)]
        return [(ContextVariant(plan, u), fixed_contexts(forward, u)) for u in (True, False)]

    def _metadata(self, b: int) -> AttentionMetadata:
        """The bucket's static metadata. No host tuples: captured kernels must read the lengths
        on the device (``max_context_len`` is the longest possible, so splits cover any batch)."""
        return AttentionMetadata(
            cu_seqlens_q=self.cu_seqlens[: b + 1],
            context_lens=self.context_lens[:b],
            block_tables=self.block_tables[:b],
            slot_mapping=self.slot_mapping[:b],
            num_decode_seqs=b,
            max_query_len=1,
            max_context_len=self.max_model_len,
            block_size=self.block_size,
        )

    def _context(self, b: int) -> tuple[torch.Tensor, ForwardContext]:
        return self.input_ids[:b], ForwardContext(
            self.positions[:b], self.metas[b], self.kv_caches, self.ops
        )

    def forward(self, key: GraphKey, out: torch.Tensor | None = None) -> torch.Tensor:
        """Logits of the static buffers' first ``key[0]`` rows with ``key``'s plan (eagerly;
        what ``capture`` records), written into ``out`` when given."""
        ids, ctx = self._context(key[0])
        return self.model.compute_logits(self.forwards[key](ids, ctx), self.ops, out)

    @torch.inference_mode()
    def capture(self) -> None:
        """Capture every (batch size, plan), largest first, sharing one memory pool. Every graph
        writes its logits into the first rows of one buffer [largest batch, vocab] in the
        model's dtype: one float32 output per graph kept b x vocab floats alive for each
        (9.2 GB over the batch sizes up to 1,024 with Llama-3's 128k vocabulary, plus as much
        again for a plan set's extra plans,
        which ran an fp8 engine with three plans out of memory at capture on the H200). A
        replay's logits are read (sampled) on the stream before the next replay, as they were
        when two replays of one batch size shared a graph's output."""
        for key in sorted(self.forwards, key=lambda k: (-k[0], str(k[1]))):
            b = key[0]
            warm = self.forward(key)  # warm-up: compiles kernels outside the capture
            if self.logits_buf is None:
                self.logits_buf = warm.new_empty((max(self.buckets), warm.shape[1]))
            del warm
            self.attention.prepare_capture(self.metas[b])
            torch.cuda.synchronize()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, pool=self.pool):
                self.logits[key] = self.forward(key, self.logits_buf[:b])
            if self.pool is None:
                self.pool = graph.pool()
            self.graphs[key] = graph
        torch.cuda.synchronize()
        ratio = self.uniform_ratio
        shapes = (f"; each for uniform (max <= {ratio_text(ratio)} x mean) and for ragged contexts "
                  "(by-context decode attention)" if ratio is not None else "")  # fmt: skip
        logger.info("captured decode CUDA graphs: %s%s", capture_summary(self.graphs), shapes)

    @property
    def max_batch(self) -> int:
        """The largest decode batch a captured graph holds (0: none captured)."""
        return max((b for b, _ in self.graphs), default=0)

    def replays_by_plan(self) -> dict[str, int]:
        """Replays so far per plan over every batch size ('dense': the plain forward)."""
        out: Counter[str] = Counter()
        for (_, plan), count in self.replays.items():
            out["dense" if plan is None else str(plan)] += count
        return dict(sorted(out.items()))

    def bucket_for(self, n: int) -> int | None:
        return next((b for b in sorted(self.buckets) if b >= n), None)

    def key_for(
        self,
        n: int,
        context_lens: torch.Tensor,
        turn: Turn | None = None,
        uniform: bool | None = None,
    ) -> GraphKey:
        """The graph of a decode batch of ``n`` sequences: its batch-size bucket and the plan
        of that size at the mean context of its real rows (padding rows do not count), or the
        dense graph when a guard's ``turn`` says dense; under "by-context", that plan's variant
        for how uniform those rows' contexts are (``uniform``, computed when not given)."""
        b = self.bucket_for(n)
        assert b is not None, f"no decode graph holds {n} sequences"
        plan = self.variants.graph_key(b, self._mean_context(n, context_lens))
        if turn is not None and not turn.runs_plan:
            plan = None
        if self.uniform_ratio is not None:  # host lengths (the plan's): no device read
            if uniform is None:
                uniform = self.contexts_uniform(n, context_lens)
            plan = ContextVariant(plan, bool(uniform))
        key = (b, plan)
        assert key in self.forwards, f"decode graph {key} was not made"
        return key

    def contexts_uniform(self, n: int, context_lens: torch.Tensor) -> bool | None:
        """Whether the ``n`` rows' contexts are near-uniform under "by-context" (None: the
        graphs do not depend on it)."""
        if self.uniform_ratio is None:
            return None
        return contexts_uniform(context_lens[:n].tolist(), self.uniform_ratio)

    @staticmethod
    def graph_mode(uniform: bool | None) -> str:
        """The guard's name for a replay's kind: pairs of one kind are compared."""
        if uniform is None:
            return "graph"
        return f"graph, {'uniform' if uniform else 'ragged'} contexts"

    @staticmethod
    def _mean_context(n: int, context_lens: torch.Tensor) -> float:
        return float(context_lens[:n].float().mean()) if n else 0.0

    @torch.inference_mode()
    def load(self, inputs: DecodeInputs) -> torch.Tensor:
        """Copy a batch into the static buffers; returns the input-id buffer of its rows."""
        n = inputs.input_ids.shape[0]
        b = self.bucket_for(n)
        assert b is not None, f"no decode graph holds {n} sequences"
        # one turn per loaded batch: a guarded bucket's trial advances here
        uniform = self.contexts_uniform(n, inputs.context_lens)
        mean = self._mean_context(n, inputs.context_lens)
        self.turn = self.variants.decode_turn(b, mean, self.graph_mode(uniform))
        self.loaded = self.key_for(n, inputs.context_lens, self.turn, uniform)
        b = self.loaded[0]
        # from pinned staging: a copy from pageable memory may make the host wait for the
        # device, and the device would then idle while the host prepares the replay
        if self.separate_copies:
            self._copy_separately(inputs, b)
        else:  # two copies: each small copy costs the device some microseconds
            self.staging.upload(self.staging.host(inputs))
            tables = np.zeros((b, inputs.block_tables.shape[1]), dtype=np.int32)
            tables[:n] = inputs.block_tables.numpy()
            tables[n:, 0] = self.scratch_block  # padding rows read the scratch block
            self._copy(self.block_tables[:b, : tables.shape[1]], torch.from_numpy(tables))
        self.context_lens_host = (*inputs.context_lens.tolist(), *[1] * (b - n))
        return self.input_ids[:n]

    def patch_indices(self, k: int) -> tuple[torch.Tensor, torch.Tensor]:
        """The loaded batch's first ``k`` patch rows and their source rows, on the device."""
        return self.staging.field("patch_dst")[:k], self.staging.field("patch_src")[:k]

    @staticmethod
    def _copy(dst: torch.Tensor, src: torch.Tensor) -> None:
        dst.copy_(pinned(src) if dst.is_cuda else src, non_blocking=True)

    def _copy_separately(self, inputs: DecodeInputs, b: int) -> None:
        """``NANOLANG_DECODE_COPIES=separate``: a copy per tensor, device fills for padding."""
        n, w, k = inputs.input_ids.shape[0], inputs.block_tables.shape[1], len(inputs.patch_rows)
        self._copy(self.input_ids[:n], inputs.input_ids)
        self._copy(self.positions[:n], inputs.positions)
        self._copy(self.slot_mapping[:n], inputs.slot_mapping)
        self._copy(self.context_lens[:n], inputs.context_lens)
        self._copy(self.block_tables[:n, :w], inputs.block_tables)
        if k:
            dst, src = self.patch_indices(k)
            self._copy(dst, torch.tensor(inputs.patch_rows, dtype=torch.int64))
            self._copy(src, torch.tensor(inputs.patch_src, dtype=torch.int64))
        # padding rows (from n to b) keep pointing at the scratch block
        self.slot_mapping[n:b].fill_(self.scratch_block * self.block_size)
        self.context_lens[n:b].fill_(1)
        self.block_tables[n:b, 0].fill_(self.scratch_block)

    @torch.inference_mode()
    def replay(self, n: int) -> torch.Tensor:
        """Replay the graph of the ``n`` loaded rows (its batch size and plan, as ``load``
        chose); returns logits [n, V] in the model's dtype. On CUDA, ``replay_events`` are
        then timing events recorded right before and after the graph's own launch."""
        key = self.loaded
        assert key is not None and key[0] == self.bucket_for(n), "load the batch first"
        b = key[0]
        loaded = replace(self.metas[b], cu_seqlens_q_host=tuple(range(b + 1)),
                         context_lens_host=self.context_lens_host)  # fmt: skip
        self.attention.prepare_replay(loaded)
        start = _timing_event()
        self.variants.timed(self.turn, self.graphs[key].replay)
        end = _timing_event()
        self.replay_events = None if start is None or end is None else (start, end)
        self.replays[key] += 1
        return self.logits[key][:n]
