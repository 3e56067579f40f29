"""The model runner's forward function when a pipeline is configured: a plan per batch, from a
searched plan set (by batch shape: decode sequences, prefill tokens, mean context; some shapes
run the dense forward) or from the hand-picked plans (by workload class). For decode CUDA graphs
it names the distinct plans a decode batch size may run across the context buckets, and the one
a loaded batch's real context picks (runtime.cuda_graph keys its graphs by both)."""

from __future__ import annotations

from collections.abc import Callable

import torch

from kernels import AttentionMetadata, Ops
from runtime.model.llama import ForwardContext, LlamaModel
from runtime.pipeline.executor import NetworkGroups, PipelineExecutor
from runtime.pipeline.plan import PlanError
from runtime.pipeline.plans import load_pipeline, workload_class
from runtime.pipeline.planset import PlanSet, check_kv_dtype, kv_dtype_name, signature_of

Forward = Callable[[torch.Tensor, ForwardContext], torch.Tensor]


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
    ) -> None:
        """``source``: a plan set already made (the network search's, under tensor
        parallelism) instead of what ``spec`` names; ``network_groups``: see PipelineExecutor;
        ``kv_dtype``: the engine's KV cache dtype: 'default' finds the searched set of that dtype
        only, and a named plan set of another dtype is refused (None: no check)."""
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

    @property
    def always_dense(self) -> bool:
        """True when every batch shape runs the dense forward (a plan set with no plans): the
        engine then keeps the model's own forward and skips the per-iteration lookup."""
        return self.planset is not None and not self.executors

    def executor_for(
        self, num_tokens: int, num_decode_seqs: int, context: float | None = None
    ) -> PipelineExecutor | None:
        """The executor of a batch's plan; None: the plan set says dense for this shape."""
        if self.planset is None:
            return self.executors[workload_class(num_tokens, num_decode_seqs)]
        bucket = self.planset.lookup(num_decode_seqs, num_tokens - num_decode_seqs, context)
        return None if bucket.plan is None else self.executors[bucket.plan]

    def __call__(self, input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        return self._run(input_ids, ctx, mean_context(ctx.attn))

    def _run(
        self, input_ids: torch.Tensor, ctx: ForwardContext, context: float | None
    ) -> torch.Tensor:
        num_tokens = int(input_ids.shape[0])
        ex = self.executor_for(num_tokens, ctx.attn.num_decode_seqs, context)
        return self.model(input_ids, ctx) if ex is None else ex.forward(input_ids, ctx)

    # ------------------------------------------------------------ decode CUDA graphs
    def graph_key(self, decodes: int, context: float) -> str | None:
        """What a decode-only batch of ``decodes`` rows at mean ``context`` runs: a plan file
        (or workload class) name; None: the dense forward."""
        if self.planset is None:
            return workload_class(decodes, decodes)
        return self.planset.lookup(decodes, 0, context).plan

    def graph_variants(self, decodes: int) -> dict[str | None, Forward]:
        """One forward per distinct plan a decode-only batch of ``decodes`` rows runs over the
        plan set's context buckets (usually one), each fixed to a context of its buckets: a
        captured forward has no host lengths to look the bucket up with."""
        points = self.planset.context_points if self.planset is not None else (0,)
        out: dict[str | None, Forward] = {}
        for c in points:
            key = self.graph_key(decodes, c)
            if key not in out:
                out[key] = self._at_context(c)
        return out

    def _at_context(self, context: float) -> Forward:
        return lambda input_ids, ctx: self._run(input_ids, ctx, context)

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
