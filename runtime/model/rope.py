"""Rotary-embedding tables. Scaled types (linear, dynamic NTK, yarn, llama3) take their inverse
frequencies and attention factor from transformers' rope utilities, as the checkpoint's own
modelling code would."""

from __future__ import annotations

from typing import Any

import torch

from runtime.config import RopeConfig


def inverse_frequencies(
    rope: RopeConfig, head_dim: int, max_positions: int
) -> tuple[torch.Tensor, float]:
    """[head_dim // 2] float64 inverse frequencies, and the factor cos and sin are scaled by."""
    if rope.rope_type == "default":
        # own two lines: transformers 5 has no init function for unscaled rope, and float64 keeps
        # the tables of every unscaled model exactly as they were
        exponents = torch.arange(0, head_dim, 2, dtype=torch.float64) / head_dim
        return 1.0 / (rope.theta**exponents), 1.0
    from transformers import LlamaConfig
    from transformers.modeling_rope_utils import ROPE_INIT_FUNCTIONS

    legacy: dict[str, Any] = {  # read by transformers 4.x, converted by 5.x
        "rope_theta": rope.theta,
        "rope_scaling": {"rope_type": rope.rope_type, **dict(rope.scaling)},
    }
    config = LlamaConfig(
        hidden_size=head_dim,
        num_attention_heads=1,
        head_dim=head_dim,
        max_position_embeddings=rope.max_position_embeddings,
        **legacy,
    )
    # dynamic NTK: one table for the longest position served (vLLM's choice), not per batch
    extra = {"seq_len": max_positions} if rope.rope_type == "dynamic" else {}
    inv_freq, attention_factor = ROPE_INIT_FUNCTIONS[rope.rope_type](config, "cpu", **extra)
    return inv_freq.double(), float(attention_factor)


def cos_sin_cache(rope: RopeConfig, head_dim: int, max_positions: int) -> torch.Tensor:
    """[max_positions, head_dim] float32: cos of each frequency, then sin (times yarn's factor)."""
    inv_freq, attention_factor = inverse_frequencies(rope, head_dim, max_positions)
    angles = torch.outer(torch.arange(max_positions, dtype=torch.float64), inv_freq)
    return (torch.cat([angles.cos(), angles.sin()], dim=-1) * attention_factor).float()
