"""Tensor parallelism of degree N applied to a loaded dense ``LlamaModel`` in place.

Each rank keeps a slice of every weight and the model runs unchanged around it:

- qkv and gate-up projections are column-parallel: a rank keeps its own query heads, its own KV
  heads (so the KV cache it allocates holds only those heads) and its slice of the MLP width;
- o and down projections are row-parallel: each rank's partial product is summed by an
  all-reduce over the group before the residual add;
- the embedding and LM head are vocabulary-parallel: a rank keeps rows [r * Vp, (r + 1) * Vp)
  of the vocabulary padded to a multiple of N; an embedding lookup is masked and all-reduced,
  the logits of every rank are all-gathered and cut back to the true vocabulary.

Norms and the rope table are replicated. ``model.cfg`` becomes the rank-local config (heads and
MLP width divided by N, vocabulary kept whole), which is what the model runner sizes the KV
cache from. Every rank must feed the same batch; the sampled tokens then agree on every rank.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from runtime.config import ModelConfig
from runtime.model.llama import Activations, DecoderLayer, ForwardContext, LlamaModel
from runtime.model_runner import ModelRunner


@dataclass(frozen=True)
class TPLayout:
    """Where this rank sits in the tensor-parallel group."""

    rank: int
    world_size: int
    group: Any = None  # a torch.distributed ProcessGroup; None: the default group

    @classmethod
    def current(cls, group: Any = None) -> TPLayout:
        if not dist.is_initialized():
            raise RuntimeError(
                "tensor parallelism needs torch.distributed.init_process_group first"
            )
        return cls(dist.get_rank(group), dist.get_world_size(group), group)


def local_config(cfg: ModelConfig, tp: int) -> ModelConfig:
    """The config of one rank's slice; a clear error when the model does not divide by ``tp``."""
    for name, value in (
        ("num_attention_heads", cfg.num_heads),
        ("num_key_value_heads", cfg.num_kv_heads),
        ("intermediate_size", cfg.intermediate_size),
    ):
        if value % tp:
            raise ValueError(f"tensor_parallel_size {tp} does not divide {name} ({value})")
    return dataclasses.replace(
        cfg,
        num_heads=cfg.num_heads // tp,
        num_kv_heads=cfg.num_kv_heads // tp,
        intermediate_size=cfg.intermediate_size // tp,
    )


def _chunk(t: torch.Tensor, sizes: list[int], layout: TPLayout, dim: int = 0) -> torch.Tensor:
    """From each consecutive piece of ``sizes`` along ``dim``, this rank's 1/N; concatenated."""
    parts = [p.chunk(layout.world_size, dim)[layout.rank] for p in t.split(sizes, dim)]
    return torch.cat(parts, dim).contiguous()


def _vocab_rows(t: torch.Tensor, layout: TPLayout) -> torch.Tensor:
    per_rank = -(-t.shape[0] // layout.world_size)
    padded = torch.zeros(per_rank * layout.world_size, t.shape[1], dtype=t.dtype, device=t.device)
    padded[: t.shape[0]] = t
    return padded[layout.rank * per_rank : (layout.rank + 1) * per_rank].clone()


def _all_reduce(t: torch.Tensor, layout: TPLayout) -> torch.Tensor:
    dist.all_reduce(t, group=layout.group)
    return t


class TPDecoderLayer(DecoderLayer):
    """A decoder layer holding one rank's slices; the row-parallel outputs are all-reduced."""

    tp: TPLayout

    def _o_proj(self, x: Activations, ctx: ForwardContext) -> None:
        super()._o_proj(x, ctx)
        x.hidden = _all_reduce(x.hidden, self.tp)

    def _down_proj(self, x: Activations, ctx: ForwardContext) -> None:
        super()._down_proj(x, ctx)
        x.hidden = _all_reduce(x.hidden, self.tp)


class TPLlamaModel(LlamaModel):
    """The dense model with a vocabulary-parallel embedding and LM head."""

    tp: TPLayout
    vocab_start: int  # first vocabulary row this rank holds
    vocab_size: int  # the true (unpadded) vocabulary

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        local = input_ids - self.vocab_start
        outside = (local < 0) | (local >= self.embed_tokens.shape[0])
        rows = self.embed_tokens.index_select(0, local.masked_fill(outside, 0))
        return _all_reduce(rows.masked_fill(outside.unsqueeze(1), 0), self.tp)

    @torch.inference_mode()
    def compute_logits(self, hidden: torch.Tensor, ops: Any) -> torch.Tensor:
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        local = ops.linear(hidden, head).float().contiguous()
        parts = [torch.empty_like(local) for _ in range(self.tp.world_size)]
        dist.all_gather(parts, local, group=self.tp.group)
        return torch.cat(parts, dim=-1)[:, : self.vocab_size]


@torch.no_grad()
def _shard_layer(layer: DecoderLayer, full: ModelConfig, tp: TPLayout) -> None:
    qkv = [full.q_size, full.kv_size, full.kv_size]
    layer.qkv_proj.data = _chunk(layer.qkv_proj.data, qkv, tp)
    if layer.qkv_bias is not None:
        layer.qkv_bias.data = _chunk(layer.qkv_bias.data, qkv, tp)
    layer.o_proj.data = _chunk(layer.o_proj.data, [full.q_size], tp, dim=1)
    i = full.intermediate_size
    layer.gate_up_proj.data = _chunk(layer.gate_up_proj.data, [i, i], tp)
    layer.down_proj.data = _chunk(layer.down_proj.data, [i], tp, dim=1)


@torch.no_grad()
def apply_tensor_parallel(model: LlamaModel, tp: TPLayout) -> TPLlamaModel:
    """Slice ``model``'s weights for rank ``tp.rank`` and make it run tensor-parallel, in place."""
    if isinstance(model, TPLlamaModel):
        raise ValueError("the model is already tensor-parallel")
    full = model.cfg
    cfg = local_config(full, tp.world_size)
    for layer in model.layers:
        assert isinstance(layer, DecoderLayer)
        _shard_layer(layer, full, tp)
        layer.cfg = cfg
        layer.__class__ = TPDecoderLayer
        assert isinstance(layer, TPDecoderLayer)
        layer.tp = tp
    per_rank = -(-full.vocab_size // tp.world_size)
    model.embed_tokens.data = _vocab_rows(model.embed_tokens.data, tp)
    if model.lm_head is not None:
        model.lm_head.data = _vocab_rows(model.lm_head.data, tp)
    model.cfg = cfg
    model.__class__ = TPLlamaModel
    assert isinstance(model, TPLlamaModel)
    model.tp, model.vocab_start, model.vocab_size = tp, tp.rank * per_rank, full.vocab_size
    return model


def shard_engine(engine: Any, tp: TPLayout) -> None:
    """Make a freshly built ``LLMEngine`` run as one rank of a tensor-parallel group: its model
    is sliced in place and its runner rebuilt, so the KV cache holds only this rank's KV heads.
    Every rank must then be given the same requests in the same order (identical schedulers)."""
    if engine.config.pipeline is not None:
        raise ValueError("tensor parallelism does not yet combine with a pipeline plan")
    if engine.runner.graphs is not None or engine._inflight is not None:
        raise ValueError("shard the engine before it captures CUDA graphs or runs requests")
    runner = engine.runner
    num_blocks = runner.scratch_block
    _check_same_on_every_rank(num_blocks, engine.device, tp)
    apply_tensor_parallel(engine.model, tp)
    engine.runner = None  # free the dense KV cache before the sharded one is allocated
    del runner
    engine.runner = ModelRunner(engine.model, engine.ops, engine.blocks, num_blocks)


def _check_same_on_every_rank(num_blocks: int, device: torch.device, tp: TPLayout) -> None:
    """Identical schedulers need identical KV block counts (free GPU memory can differ)."""
    both = torch.tensor([num_blocks, -num_blocks], dtype=torch.int64, device=device)
    dist.all_reduce(both, op=dist.ReduceOp.MIN, group=tp.group)
    low, high = int(both[0]), -int(both[1])
    if low != high:
        raise ValueError(
            f"ranks found between {low} and {high} KV blocks; pass kv_cache_memory_bytes so that "
            "every rank's scheduler sees the same number"
        )
