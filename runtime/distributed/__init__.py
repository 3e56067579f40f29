"""Tensor parallelism as a rewrite of the dense model (the model file stays unaware of it)."""

from runtime.distributed.tensor_parallel import TPLayout, apply_tensor_parallel, shard_engine

__all__ = ["TPLayout", "apply_tensor_parallel", "shard_engine"]
