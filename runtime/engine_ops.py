"""The kernel operators an engine (or a tensor-parallel rank) runs, as its config chooses them."""

from __future__ import annotations

import torch

from kernels import Ops, get_ops
from runtime.config import EngineConfig


def engine_ops(config: EngineConfig, device: torch.device) -> Ops:
    """The device's operators with an attention backend of their own (its plans and CUDA-graph
    buffers belong to one engine), then the config's choices: the linear backend, fused or
    unfused rope + KV store, and how decode attention runs."""
    ops = get_ops(device, config.attention_backend).fresh()
    if config.linear_backend is not None:
        ops = ops.with_backend("linear", config.linear_backend, device)
    if not config.fuse_rope_kv_store:
        ops = ops.unfused()
    return ops.with_decode(config.decode_choice())
