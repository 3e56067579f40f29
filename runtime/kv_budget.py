"""How many KV blocks fit: found at start-up from a memory budget, never configured by hand."""

from __future__ import annotations

import os

import torch

from runtime.config import EngineConfig, ModelConfig

CPU_DEFAULT_FRACTION = 0.10  # of physical memory
CPU_DEFAULT_CAP = 2 << 30  # bytes


def activation_reserve(cfg: ModelConfig, engine: EngineConfig, elem: int) -> int:
    """Bytes kept free for one iteration's activations and logits (an upper estimate)."""
    t = engine.max_num_batched_tokens
    per_token = 4 * cfg.hidden_size + 3 * cfg.intermediate_size + cfg.q_size + 2 * cfg.kv_size
    logits = engine.max_num_seqs * cfg.vocab_size * 4 * 4  # float32 logits, probs, sort, noise
    return t * per_token * elem + logits + (512 << 20)


def kv_memory_budget(
    cfg: ModelConfig, engine: EngineConfig, device: torch.device, dtype: torch.dtype
) -> int:
    if engine.kv_cache_memory_bytes is not None:
        return engine.kv_cache_memory_bytes
    elem = torch.empty((), dtype=dtype).element_size()
    if device.type == "cuda":
        free, total = torch.cuda.mem_get_info(device)
        in_use_elsewhere = total - free
        usable = int(total * engine.gpu_memory_utilization) - in_use_elsewhere
        return max(0, usable - activation_reserve(cfg, engine, elem))
    physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return min(CPU_DEFAULT_CAP, int(physical * CPU_DEFAULT_FRACTION))


def num_kv_blocks(budget_bytes: int, bytes_per_block: int, max_useful_blocks: int) -> int:
    """Blocks that fit in the budget, but no more than the engine could ever fill."""
    return min(budget_bytes // bytes_per_block, max_useful_blocks)
