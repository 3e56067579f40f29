"""The model runner's forward function when a pipeline is configured: one executor per workload
class, chosen per batch."""

from __future__ import annotations

import torch

from kernels import Ops
from runtime.model.llama import ForwardContext, LlamaModel
from runtime.pipeline.executor import PipelineExecutor
from runtime.pipeline.plans import load_plans, workload_class


class PipelineForward:
    """Callable like ``LlamaModel.forward``: (input_ids [T], ctx) -> hidden [T, H]."""

    def __init__(self, spec: str, model: LlamaModel, ops: Ops) -> None:
        self.spec = spec
        plans = load_plans(spec)
        self.executors = {cls: PipelineExecutor(plan, model, ops) for cls, plan in plans.items()}

    def executor_for(self, num_tokens: int, num_decode_seqs: int) -> PipelineExecutor:
        return self.executors[workload_class(num_tokens, num_decode_seqs)]

    def __call__(self, input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        ex = self.executor_for(int(input_ids.shape[0]), ctx.attn.num_decode_seqs)
        return ex.forward(input_ids, ctx)

    def describe(self) -> str:
        return ", ".join(f"{c}: {e.plan.name}" for c, e in self.executors.items())
