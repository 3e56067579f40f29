"""The model runner's forward function when a pipeline is configured: a plan per batch, from a
searched plan set (by batch shape: decode sequences, prefill tokens, mean context; some shapes
run the dense forward) or from the hand-picked plans (by workload class)."""

from __future__ import annotations

import torch

from kernels import AttentionMetadata, Ops
from runtime.model.llama import ForwardContext, LlamaModel
from runtime.pipeline.executor import NetworkGroups, PipelineExecutor
from runtime.pipeline.plan import PlanError
from runtime.pipeline.plans import load_pipeline, workload_class
from runtime.pipeline.planset import PlanSet, signature_of


class PipelineForward:
    """Callable like ``LlamaModel.forward``: (input_ids [T], ctx) -> hidden [T, H]."""

    def __init__(
        self,
        spec: str,
        model: LlamaModel,
        ops: Ops,
        source: PlanSet | None = None,
        network_groups: NetworkGroups | None = None,
    ) -> None:
        """``source``: a plan set already made (the network search's, under tensor
        parallelism) instead of what ``spec`` names; ``network_groups``: see PipelineExecutor."""
        self.spec, self.model = spec, model
        device = model.embed_tokens.device
        name = torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu"
        elem = model.embed_tokens.element_size()
        signature = signature_of(model.cfg, elem)
        found = load_pipeline(spec, signature, name) if source is None else source
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
        num_tokens = int(input_ids.shape[0])
        ex = self.executor_for(num_tokens, ctx.attn.num_decode_seqs, mean_context(ctx.attn))
        return self.model(input_ids, ctx) if ex is None else ex.forward(input_ids, ctx)

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
