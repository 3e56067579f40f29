"""Tensor parallelism of degree N applied to a loaded dense ``LlamaModel`` in place.

Each rank keeps a slice of every weight and the model runs unchanged around it:

- qkv and gate-up projections are column-parallel: a rank keeps its own query heads, its own KV
  heads (so the KV cache it allocates holds only those heads) and its slice of the MLP width;
- o and down projections are row-parallel: each rank's partial product is summed by an
  all-reduce over the group before the residual add (an operation of its own, kind NETWORK);
- the embedding and LM head are vocabulary-parallel: a rank keeps rows [r * Vp, (r + 1) * Vp)
  of the vocabulary padded to a multiple of N; an embedding lookup is masked and all-reduced,
  the logits of every rank are all-gathered and cut back to the true vocabulary.

Norms and the rope table are replicated. ``model.cfg`` becomes the rank-local config (heads and
MLP width divided by N, vocabulary kept whole), which is what the model runner sizes the KV
cache from. Every rank must run the same iterations in the same order (the driver in
``runtime.distributed.executor`` sends each iteration's plan to every rank).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

import torch
import torch.distributed as dist

from runtime.config import ModelConfig
from runtime.model.llama import (
    Activations,
    DecoderLayer,
    ForwardContext,
    LlamaModel,
    Operation,
    OpKind,
)
from runtime.model.loader import build_model, init_dummy, resolve_model


@dataclass(frozen=True)
class TPLayout:
    """Where this rank sits in the tensor-parallel group."""

    rank: int
    world_size: int
    group: Any = None  # a torch.distributed ProcessGroup; None: the default group
    # the group's own in-place all-reduce (runtime.distributed.allreduce.GroupAllReduce: NCCL,
    # or symmetric memory up to a size); None: the process group's all_reduce
    allreduce: Any = None

    @classmethod
    def current(cls, group: Any = None, allreduce: Any = None) -> TPLayout:
        if not dist.is_initialized():
            raise RuntimeError(
                "tensor parallelism needs torch.distributed.init_process_group first"
            )
        return cls(dist.get_rank(group), dist.get_world_size(group), group, allreduce)

    def all_reduce(self, t: torch.Tensor) -> torch.Tensor:
        """Sum ``t`` over the group in place (and return it)."""
        if self.allreduce is not None:
            return self.allreduce(t)  # type: ignore[no-any-return]
        dist.all_reduce(t, group=self.group)
        return t


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


class TPDecoderLayer(DecoderLayer):
    """A decoder layer holding one rank's slices. The row-parallel outputs (o and down
    projections) are summed over the group by two operations of their own, ``o_allreduce`` and
    ``down_allreduce`` (kind NETWORK), so a pipeline plan can run them on their own stream while
    another nano-batch computes; the dense forward runs them in place, in order."""

    tp: TPLayout

    def operations(self) -> list[Operation]:
        out = []
        for op in super().operations():
            out.append(op)
            if op.name == "o_proj":
                out.append(Operation("o_allreduce", OpKind.NETWORK, self._all_reduce_hidden))
            elif op.name == "down_proj":
                out.append(Operation("down_allreduce", OpKind.NETWORK, self._all_reduce_hidden))
        return out

    def _all_reduce_hidden(self, x: Activations, ctx: ForwardContext) -> None:
        if ctx.network_group is None:  # the group's own all-reduce (NCCL or symmetric memory)
            self.tp.all_reduce(x.hidden)
        else:  # a network stage's communicator
            dist.all_reduce(x.hidden, group=ctx.network_group)


class TPLlamaModel(LlamaModel):
    """The dense model with a vocabulary-parallel embedding and LM head."""

    tp: TPLayout
    vocab_start: int  # first vocabulary row this rank holds
    vocab_size: int  # the true (unpadded) vocabulary

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        local = input_ids - self.vocab_start
        outside = (local < 0) | (local >= self.embed_tokens.shape[0])
        rows = self.embed_tokens.index_select(0, local.masked_fill(outside, 0))
        return self.tp.all_reduce(rows.masked_fill(outside.unsqueeze(1), 0))

    @torch.inference_mode()
    def compute_logits(
        self, hidden: torch.Tensor, ops: Any, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        local = ops.linear(hidden, head).contiguous()  # [N, Vp], the head's dtype
        n, world = local.shape[0], self.tp.world_size
        if n == 0:  # the same on every rank (same plan): no collective at all
            return local.new_empty(0, self.vocab_size) if out is None else out
        gathered = torch.empty(world * n, local.shape[1], dtype=local.dtype, device=local.device)
        _all_gather_single(gathered, local, self.tp.group)
        # [world * N, Vp] (rank-major) -> [N, world * Vp] -> the true vocabulary
        logits = gathered.view(world, n, -1).permute(1, 0, 2).reshape(n, -1)
        logits = logits[:, : self.vocab_size]
        return logits if out is None else out.copy_(logits)


def _all_gather_single(out: torch.Tensor, inp: torch.Tensor, group: Any) -> None:
    """Gather every rank's ``inp`` into ``out`` along dim 0 (the name changed across torch
    versions: all_gather_single from 2.13, all_gather_into_tensor before)."""
    gather = getattr(dist, "all_gather_single", None) or dist.all_gather_into_tensor
    gather(out, inp, group=group)


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
    model.embed_tokens.data = _vocab_rows(model.embed_tokens.data, tp)
    if model.lm_head is not None:
        model.lm_head.data = _vocab_rows(model.lm_head.data, tp)
    return _as_tensor_parallel(model, cfg, full.vocab_size, tp)


def _as_tensor_parallel(
    model: LlamaModel, local: ModelConfig, vocab_size: int, tp: TPLayout
) -> TPLlamaModel:
    """Turn a model whose weights are already one rank's slices into the TP classes."""
    for layer in model.layers:
        assert isinstance(layer, DecoderLayer)
        layer.cfg = local
        layer.__class__ = TPDecoderLayer
        assert isinstance(layer, TPDecoderLayer)
        layer.tp = tp
    model.cfg = local
    model.__class__ = TPLlamaModel
    assert isinstance(model, TPLlamaModel)
    per_rank = -(-vocab_size // tp.world_size)
    model.tp, model.vocab_start, model.vocab_size = tp, tp.rank * per_rank, vocab_size
    return model


def build_tensor_parallel_model(
    model: str,
    overrides: dict[str, Any] | None,
    dtype: torch.dtype,
    device: torch.device,
    load_format: str,
    max_positions: int,
    seed: int,
    tp: TPLayout,
) -> TPLlamaModel:
    """This rank's slice of ``model``. A checkpoint is read whole on the host and sliced before
    it moves to the device; random weights (``dummy``) are made at the slice's size on the device
    directly, so a model twice one GPU's memory still builds (its values differ from TP=1's)."""
    if load_format != "dummy":
        full = build_model(model, overrides, dtype, torch.device("cpu"), load_format,
                           max_positions, seed)  # fmt: skip
        return apply_tensor_parallel(full, tp).to(device)
    _, cfg = resolve_model(model, overrides)
    local = local_config(cfg, tp.world_size)
    padded_vocab = -(-cfg.vocab_size // tp.world_size)
    with torch.device(device):
        net = LlamaModel(dataclasses.replace(local, vocab_size=padded_vocab), dtype, max_positions)
    init_dummy(net, seed)
    return _as_tensor_parallel(net.eval(), local, cfg.vocab_size, tp)
