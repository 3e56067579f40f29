"""NanoFlow-style pipelines: nano-batches of the dense batch, per-operation execution units on
disjoint SM partitions, applied to the model's operation list without changing the model."""

from runtime.pipeline.executor import PipelineExecutor, TraceEntry
from runtime.pipeline.plan import OpSplit, Partition, Plan, PlanError, Step, Unit
from runtime.pipeline.plans import (
    carve_plan,
    default_plans,
    load_plans,
    two_partition_plan,
    workload_class,
)
from runtime.pipeline.validate import validate

__all__ = [
    "OpSplit",
    "Partition",
    "PipelineExecutor",
    "Plan",
    "PlanError",
    "Step",
    "TraceEntry",
    "Unit",
    "carve_plan",
    "default_plans",
    "load_plans",
    "two_partition_plan",
    "validate",
    "workload_class",
]
