"""Runs one forward pass of the dense model as a pipeline plan says: nano-batches, streams on
disjoint SM partitions, events between dependent steps. The model is only read (its operation
list, embedding and final norm); it does not know about nano-batches. Under tensor parallelism
the layer's network operations (the all-reduces after the row-parallel GEMMs) are steps like any
other: on a unit of their own, one nano-batch's all-reduce runs while another's GEMMs do, every
rank issuing the same collectives in the same order (the same plan and batch on every rank).

Dependencies: a step waits on the nano-batches of the previous operation whose rows overlap its
own (its inputs; for attention also the KV-cache writes of its sequences, since store_kv precedes
it), plus the plan's ``after`` pairs. Tensors handed across streams are marked with
``record_stream`` so the caching allocator does not reuse them while another stream reads them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

import torch

from kernels import Ops
from runtime.model.llama import Activations, ForwardContext, LlamaModel, OpKind
from runtime.pipeline.partitions import Units
from runtime.pipeline.plan import Plan, Unit
from runtime.pipeline.split import Rows, assemble, seq_starts, slice_context, snap_bounds, tensors
from runtime.pipeline.validate import Node, issue_sequence, overlaps, validate


@dataclass
class TraceEntry:
    """One executed step with its device events (wall-clock floats on the CPU)."""

    layer: int
    op: str
    nano_batch: int
    partition: int
    rows: Rows
    start: object
    end: object


_Wait = tuple["torch.cuda.Stream | None", "torch.cuda.Event | None"]


@dataclass(eq=False)
class _Piece:
    rows: Rows
    x: Activations
    stream: torch.cuda.Stream | None
    event: torch.cuda.Event | None
    consumers: int


# a network unit's collective group by its CTA cap (None: uncapped): tensor parallelism's
NetworkGroups = Callable[[int | None], Any]


class PipelineExecutor:
    """``network_groups`` (tensor parallelism): the process group the network operations of a
    unit use, by the unit's ``max_sms`` (for a collective: its CTA cap); None: the layer's own."""

    def __init__(
        self, plan: Plan, model: LlamaModel, ops: Ops, network_groups: NetworkGroups | None = None
    ) -> None:
        self.model, self.plan = model, plan
        self.device = model.embed_tokens.device
        layer_ops = model.operations()[0]
        self.op_names = [op.name for op in layer_ops]
        network = {op.name for op in layer_ops if op.kind is OpKind.NETWORK}
        device_sms = (
            torch.cuda.get_device_properties(self.device).multi_processor_count
            if self.device.type == "cuda"
            else None
        )
        validate(plan, self.op_names, device_sms, network)
        self.units = Units(plan, self.device)
        self.splits = [plan.split(n) for n in self.op_names]
        self.num_layers = len(model.layers)
        self.sequence = issue_sequence(plan, self.op_names, self.num_layers)
        self.after = self._after_index()
        self.ops_for = {s.unit: ops if s.op in network else
                        self._partition_ops(ops, self._budget(s.unit), s.unit.max_sms is not None)
                        for s in plan.ops}  # fmt: skip
        self.groups: dict[Unit, Any] = {}
        if network_groups is not None:
            for s in plan.ops:
                if s.op in network and s.unit not in self.groups:
                    self.groups[s.unit] = network_groups(s.unit.max_sms)
        self.trace: list[TraceEntry] | None = None  # set to a list to record the next forward

    def _after_index(self) -> dict[tuple[int, int], list[tuple[int, int]]]:
        index = {n: i for i, n in enumerate(self.op_names)}
        out: dict[tuple[int, int], list[tuple[int, int]]] = {}
        for step, dep in self.plan.after:
            key = (index[step.op], step.nano_batch)
            out.setdefault(key, []).append((index[dep.op], dep.nano_batch))
        return out

    def _budget(self, unit: Unit) -> int | None:
        """SMs a unit's grid-sized kernels may use: its cap, else its partition's green context
        (None: the whole device, no cap)."""
        granted = self.units.sms.get(unit.partition)
        if unit.max_sms is None:
            return granted
        return unit.max_sms if granted is None else min(unit.max_sms, granted)

    @staticmethod
    def _partition_ops(ops: Ops, num_sms: int | None, capped: bool = True) -> Ops:
        """Operations on a partition or under a cap of ``num_sms`` SMs: decode attention gets a
        persistent grid sized to them; under a cap (``capped``: a plain stream's ``max_sms``)
        cuBLASLt's GEMMs are aimed at them too (a carve plan: attention's grid sized to N on one
        stream, the GEMMs aimed at the other SMs on the other). On a green partition the GEMMs
        stay as profiled there: unaimed, confined by the context."""
        if num_sms is None:
            return ops
        if not capped:
            return dataclasses.replace(ops, paged_attention=ops.paged_attention.on_sms(num_sms))
        return ops.on_sms(num_sms)

    # ------------------------------------------------------------------ forward
    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """input_ids [T] -> final hidden states [T, H], like ``LlamaModel.forward``."""
        model, total = self.model, int(input_ids.shape[0])
        x0 = Activations(hidden=model.embed(input_ids))
        starts = seq_starts(ctx.attn, total)
        bounds = [snap_bounds(s.sizes, starts) for s in self.splits]
        main = torch.cuda.current_stream() if self.device.type == "cuda" else None
        # sliced metadata is computed on the main stream before the fork: every stream sees it
        contexts: dict[tuple[Rows, Unit], ForwardContext] = {}
        for i, split in enumerate(self.splits):
            for rows in bounds[i]:
                key = (rows, split.unit)
                if rows[0] < rows[1] and key not in contexts:
                    nctx = slice_context(ctx, starts, rows, self.ops_for[key[1]])
                    if split.unit in self.groups:
                        nctx = dataclasses.replace(nctx, network_group=self.groups[split.unit])
                    contexts[key] = nctx
        self._fork(main)
        layers = model.operations()
        first = _Piece((0, total), x0, main, None, 0)
        pieces: dict[Node, _Piece] = {}
        self.events: dict[Node, _Wait] = {}  # every step's event, for the plan's 'after' pairs
        for node in self.sequence:
            layer, i, k = node
            rows = bounds[i][k]
            if rows[0] == rows[1]:
                continue
            producers = self._producers(node, bounds, pieces, first)
            nctx = contexts[(rows, self.splits[i].unit)]
            pieces[node] = self._run(node, rows, producers, pieces, layers[layer][i], nctx, ctx)
            pieces[node].consumers = _consumers(bounds, node, self.num_layers)
            self.events[node] = (pieces[node].stream, pieces[node].event)
        last = [pieces[(self.num_layers - 1, len(bounds) - 1, k)]
                for k, r in enumerate(bounds[-1]) if r[0] < r[1]]  # fmt: skip
        x = self._join(main, last, total)
        assert x.residual is not None
        eps = model.cfg.rms_norm_eps
        hidden, _ = ctx.ops.add_rms_norm(x.hidden, x.residual, model.norm, eps)
        return hidden

    def _producers(
        self, node: Node, bounds: list[list[Rows]], pieces: dict[Node, _Piece], first: _Piece
    ) -> tuple[list[_Piece], list[_Wait]]:
        """(pieces whose rows this step reads, extra events it waits on: the plan's 'after')."""
        layer, i, k = node
        if i == 0 and layer == 0:
            return [first], []
        pl, pi = (layer, i - 1) if i > 0 else (layer - 1, len(bounds) - 1)
        rows = bounds[i][k]
        found = [pieces[(pl, pi, j)] for j, r in enumerate(bounds[pi])
                 if r[0] < r[1] and overlaps(r, rows)]  # fmt: skip
        extra = [self.events[(layer, j, m)] for j, m in self.after.get((i, k), [])
                 if (layer, j, m) in self.events]  # fmt: skip
        return found, extra

    def _run(
        self,
        node: Node,
        rows: Rows,
        producers: tuple[list[_Piece], list[_Wait]],
        pieces: dict[Node, _Piece],
        op: object,
        nctx: ForwardContext,
        ctx: ForwardContext,
    ) -> _Piece:
        _layer, i, _k = node
        unit = self.splits[i].unit
        stream = self.units.streams[unit]
        data, extra = producers
        waits = [(p.stream, p.event) for p in data] + extra
        with _on(stream):
            for src, ev in waits:
                if ev is not None and src is not stream:
                    stream.wait_event(ev)  # type: ignore[union-attr]
            x = assemble([(p.rows, p.x) for p in data], rows)
            if stream is not None and any(p.stream is not stream for p in data):
                for t in tensors(x):
                    t.record_stream(stream)
            self._execute(op, x, nctx, ctx.op_hook, node, rows)
            event = None
            if stream is not None:
                event = torch.cuda.Event()
                event.record(stream)
        self._release(data, pieces, node)
        return _Piece(rows, x, stream, event, 0)

    def _execute(
        self,
        op: object,
        x: Activations,
        nctx: ForwardContext,
        hook: Callable[..., None] | None,
        node: Node,
        rows: Rows,
    ) -> None:
        run = partial(op.run, x, nctx)  # type: ignore[attr-defined]
        if self.trace is None:
            hook(op, run) if hook is not None else run()
            return
        start, end = _mark(self.device), None
        run()
        end = _mark(self.device)
        layer, i, k = node
        part = self.splits[i].unit.partition
        self.trace.append(TraceEntry(layer, self.op_names[i], k, part, rows, start, end))

    @staticmethod
    def _release(data: list[_Piece], pieces: dict[Node, _Piece], node: Node) -> None:
        """Drop a producer once every consumer has read it (the allocator keeps tensors read
        on other streams alive through record_stream)."""
        for p in data:
            p.consumers -= 1
        for key in [k for k, p in pieces.items() if p.consumers == 0 and k[0] < node[0]]:
            del pieces[key]

    def _fork(self, main: torch.cuda.Stream | None) -> None:
        if main is None:
            return
        ev = torch.cuda.Event()
        ev.record(main)
        for s in self.units.all_streams():
            if s is not main:
                s.wait_event(ev)

    def _join(self, main: torch.cuda.Stream | None, last: list[_Piece], total: int) -> Activations:
        if main is not None:
            for s in self.units.all_streams():
                if s is not main:
                    main.wait_stream(s)
        x = assemble([(p.rows, p.x) for p in last], (0, total))
        if main is not None and any(p.stream is not main for p in last):
            for t in tensors(x):
                t.record_stream(main)
        return x


def _consumers(bounds: list[list[Rows]], node: Node, num_layers: int) -> int:
    """Non-empty nano-batches of the next operation that read this one's rows (-1: the last)."""
    layer, i, k = node
    ni = (i + 1) % len(bounds)
    if ni == 0 and layer + 1 == num_layers:
        return -1
    rows = bounds[i][k]
    return sum(1 for r in bounds[ni] if r[0] < r[1] and overlaps(r, rows))


class _on:
    """``torch.cuda.stream(s)``, or nothing on the CPU."""

    def __init__(self, stream: torch.cuda.Stream | None) -> None:
        self.ctx = torch.cuda.stream(stream) if stream is not None else None

    def __enter__(self) -> None:
        if self.ctx is not None:
            self.ctx.__enter__()

    def __exit__(self, *exc: object) -> None:
        if self.ctx is not None:
            self.ctx.__exit__(*exc)  # type: ignore[arg-type]


def _mark(device: torch.device) -> object:
    if device.type != "cuda":
        import time

        return time.perf_counter()
    # inside a CUDA-graph capture: an external event becomes a record node, timed at replay
    capturing = torch.cuda.is_current_stream_capturing()
    ev = torch.cuda.Event(enable_timing=True, external=capturing)
    ev.record()
    return ev
