"""Tensor parallelism: a rewrite of the dense model (the model file stays unaware of it), one
worker process per rank, and the driver that keeps the scheduler in the calling process."""

from runtime.distributed.tensor_parallel import TPLayout, apply_tensor_parallel

__all__ = ["TPLayout", "apply_tensor_parallel"]
