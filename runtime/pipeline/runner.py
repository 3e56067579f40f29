"""The model runner's forward function when a pipeline is configured: a plan per batch, from a
searched plan set (by batch shape: decode sequences, prefill tokens, mean context; some shapes
run the dense forward) or from the hand-picked plans (by workload class). For decode CUDA graphs
it names the distinct plans a decode batch size may run across the context buckets, and the one
a loaded batch's real context picks (runtime.cuda_graph keys its graphs by both). With a plan
guard (runtime.pipeline.guard), each bucket's plan is first timed against dense and vetoed
where it is not faster: the guard steers which forward (or decode graph) a batch runs."""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import torch

from kernels import AttentionMetadata, Ops
from runtime.model.llama import ForwardContext, LlamaModel
from runtime.pipeline.executor import NetworkGroups, PipelineExecutor
from runtime.pipeline.guard import EAGER, PlanGuard, Turn
from runtime.pipeline.plan import PlanError
from runtime.pipeline.plans import load_pipeline, workload_class
from runtime.pipeline.planset import Bucket, PlanSet, check_kv_dtype, kv_dtype_name, signature_of

Forward = Callable[[torch.Tensor, ForwardContext], torch.Tensor]
R = TypeVar("R")


class PipelineForward:
    """Callable like ``LlamaModel.forward``: (input_ids [T], ctx) -> hidden [T, H]."""

    def __init__(
        self,
        spec: str,
        model: LlamaModel,
        ops: Ops,
        source: PlanSet | None = None,
        network_groups: NetworkGroups | None = None,
        kv_dtype: torch.dtype | None = None,
        guard: PlanGuard | None = None,
    ) -> None:
        """``source``: a plan set already made (the network search's, under tensor
        parallelism) instead of what ``spec`` names; ``network_groups``: see PipelineExecutor;
        ``kv_dtype``: the engine's KV cache dtype: 'default' finds the searched set of that dtype
        only, and a named plan set of another dtype is refused (None: no check); ``guard``:
        verifies a plan set's plans against dense per bucket (the hand-picked plans by workload
        class are not guarded)."""
        self.spec, self.model = spec, model
        device = model.embed_tokens.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        elem = model.embed_tokens.element_size()
        signature = signature_of(model.cfg, elem)
        kv_name = kv_dtype_name(kv_dtype if kv_dtype is not None else model.embed_tokens.dtype)
        found = load_pipeline(spec, signature, name, kv_name) if source is None else source
        if isinstance(found, PlanSet) and kv_dtype is not None:
            check_kv_dtype(found, kv_dtype, spec)
        if isinstance(found, PlanSet) and found.signature and found.signature != signature:
            raise PlanError(
                f"plan set {spec!r} was searched for layers {found.signature}, this model has "
                f"{signature}: run `nanolang tune` for it"
            )
        self.planset = found if isinstance(found, PlanSet) else None
        plans = found.plans if isinstance(found, PlanSet) else found
        self.executors = {key: PipelineExecutor(plan, model, ops, network_groups)
                          for key, plan in plans.items()}  # fmt: skip
        self.guard = guard if self.planset is not None else None

    @property
    def always_dense(self) -> bool:
        """True when every batch shape runs the dense forward (a plan set with no plans): the
        engine then keeps the model's own forward and skips the per-iteration lookup."""
        return self.planset is not None and not self.executors

    def executor_for(
        self, num_tokens: int, num_decode_seqs: int, context: float | None = None
    ) -> PipelineExecutor | None:
        """The executor of a batch's plan; None: the plan set says dense for this shape (what
        the plan set says, before any guard's verdict)."""
        if self.planset is None:
            return self.executors[workload_class(num_tokens, num_decode_seqs)]
        bucket = self.planset.lookup(num_decode_seqs, num_tokens - num_decode_seqs, context)
        return None if bucket.plan is None else self.executors[bucket.plan]

    def __call__(self, input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """An eager forward: the plan of the batch's bucket, or dense where the plan set (or
        the guard) says so; a guarded bucket's trial forwards are timed."""
        num_tokens, decodes = int(input_ids.shape[0]), ctx.attn.num_decode_seqs
        if self.planset is None:
            return self.executors[workload_class(num_tokens, decodes)].forward(input_ids, ctx)
        bucket = self.planset.lookup(decodes, num_tokens - decodes, mean_context(ctx.attn))
        turn = self._turn(bucket, profiled=ctx.op_hook is not None)
        run = self._fixed(bucket.plan if turn is None or turn.runs_plan else None)
        return self.timed(turn, lambda: run(input_ids, ctx))

    # ------------------------------------------------------------ the plan guard
    def _turn(self, bucket: Bucket, profiled: bool = False, mode: str = EAGER) -> Turn | None:
        """The guard's turn for an iteration in ``bucket`` (which side runs, whether it is
        timed) by a forward of kind ``mode``; None: not guarded (no guard, or a dense bucket):
        the plan set's answer runs. A ``profiled`` forward (per-operation hooks, eager even
        where a decode graph would replay) stays out of the trial: it runs the bucket's current
        side, untimed."""
        if self.guard is None or bucket.plan is None:
            return None
        key = (bucket.decodes, bucket.prefill_tokens, bucket.context)
        if profiled:
            return self.guard.untimed_turn(key)
        return self.guard.turn(key, bucket.plan, mode)

    def decode_turn(self, decodes: int, context: float, mode: str = "graph") -> Turn | None:
        """The guard's turn for a decode graph of ``decodes`` rows at mean ``context`` (one
        call per replay: it advances the bucket's trial); ``mode`` names the graph's kind."""
        if self.guard is None or self.planset is None:
            return None
        return self._turn(self.planset.lookup(decodes, 0, context), mode=mode)

    def timed(self, turn: Turn | None, run: Callable[[], R]) -> R:
        """``run()`` (a forward or a graph replay), timed when ``turn`` is a trial's."""
        return run() if self.guard is None else self.guard.timed(turn, run)

    # ------------------------------------------------------------ decode CUDA graphs
    def graph_key(self, decodes: int, context: float) -> str | None:
        """What a decode-only batch of ``decodes`` rows at mean ``context`` runs: a plan file
        (or workload class) name; None: the dense forward."""
        if self.planset is None:
            return workload_class(decodes, decodes)
        return self.planset.lookup(decodes, 0, context).plan

    def graph_variants(self, decodes: int) -> dict[str | None, Forward]:
        """One forward per distinct plan a decode-only batch of ``decodes`` rows runs over the
        plan set's context buckets (usually one), each fixed to its plan: a captured forward
        has no host lengths to look the bucket up with. With a guard, the dense forward too
        wherever a plan runs (the graph a vetoed bucket, or a trial's dense turn, replays)."""
        points = self.planset.context_points if self.planset is not None else (0,)
        out: dict[str | None, Forward] = {}
        for c in points:
            key = self.graph_key(decodes, c)
            if key not in out:
                out[key] = self._fixed(key)
        if self.guard is not None and any(key is not None for key in out):
            out.setdefault(None, self._fixed(None))
        return out

    def _fixed(self, key: str | None) -> Forward:
        """The forward of one plan (None: the model's own), its executor's looked up at each
        call."""
        if key is None:
            return self.model
        executor = self.executors[key]
        return lambda input_ids, ctx: executor.forward(input_ids, ctx)

    def describe(self) -> str:
        """What the pipeline runs, e.g. for a benchmark record."""
        if self.planset is not None:
            dense = sum(1 for b in self.planset.buckets if b.plan is None)
            note = ": the dense forward (the model's own)" if self.always_dense else ""
            return (f"plan set for {self.planset.device}: {len(self.planset.buckets)} buckets, "
                    f"{dense} dense, {len(self.executors)} plans{note}")  # fmt: skip
        return ", ".join(f"{c}: {e.plan.name}" for c, e in self.executors.items())


def mean_context(meta: AttentionMetadata) -> float | None:
    """Mean context length of the batch's sequences; None without host copies (graph capture)."""
    lens = meta.context_lens_host
    return sum(lens) / len(lens) if lens else None
