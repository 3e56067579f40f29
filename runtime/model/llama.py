"""The Llama-family decoder (Llama 2/3, Mistral, Qwen2) as an explicit list of operations.

Each decoder layer is a fixed sequence of named operations over a flat token batch [T, ...]:
norm, qkv projection, rope, KV store, paged attention, o projection, norm, gate-up projection,
activation, down projection (residual adds are fused into the norms). Where the kernels have the
fused ``rotary_store_kv``, the rope operation also writes k and v into the KV cache and the KV
store operation has nothing left to do. The model is dense and knows
nothing about nano-batches: a pipeline plan can later take ``layer.operations()`` and run them over
slices of the batch, on other streams, without changing this file.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from kernels import AttentionMetadata, Ops
from runtime.config import ModelConfig
from runtime.model.rope import cos_sin_cache


class OpKind(enum.Enum):
    GEMM = "gemm"  # compute-bound
    ATTENTION = "attention"  # memory-bound over the KV cache
    OTHER = "other"  # norms, rope, activation, KV store
    NETWORK = "network"  # a collective of tensor parallelism (the dense model has none)


@dataclass
class Activations:
    """Tensors flowing through one layer; every op reads and writes fields of it."""

    hidden: torch.Tensor  # [T, H]
    residual: torch.Tensor | None = None  # [T, H]
    qkv: torch.Tensor | None = None  # [T, q_size + 2 * kv_size]
    q: torch.Tensor | None = None  # [T, Hq, D]
    k: torch.Tensor | None = None  # [T, Hk, D]
    v: torch.Tensor | None = None  # [T, Hk, D]
    attn: torch.Tensor | None = None  # [T, Hq * D]
    gate_up: torch.Tensor | None = None  # [T, 2 * I]
    act: torch.Tensor | None = None  # [T, I]


@dataclass
class ForwardContext:
    """Per-iteration inputs every layer reads (plain data built by the model runner)."""

    positions: torch.Tensor  # [T] int64
    attn: AttentionMetadata
    kv_caches: list[tuple[torch.Tensor, torch.Tensor]]  # per layer: [num_blocks, bs, Hk, D] x 2
    ops: Ops
    # profiling only: called as op_hook(op, run) instead of run() for every operation
    op_hook: Callable[[Operation, Callable[[], None]], None] | None = None
    # tensor parallelism: the process group of the network operations of this (nano-)batch
    # (a pipeline's communicator with its CTA cap); None: the layer's own group
    network_group: Any = None


@dataclass(frozen=True)
class Operation:
    name: str
    kind: OpKind
    run: Callable[[Activations, ForwardContext], None]


class DecoderLayer(nn.Module):
    def __init__(self, cfg: ModelConfig, index: int, dtype: torch.dtype) -> None:
        super().__init__()
        self.cfg, self.index = cfg, index
        h, q, kv, i = cfg.hidden_size, cfg.q_size, cfg.kv_size, cfg.intermediate_size
        self.input_norm = nn.Parameter(torch.ones(h, dtype=dtype))
        self.qkv_proj = nn.Parameter(torch.empty(q + 2 * kv, h, dtype=dtype))
        self.qkv_bias = nn.Parameter(torch.zeros(q + 2 * kv, dtype=dtype)) if cfg.qkv_bias else None
        self.o_proj = nn.Parameter(torch.empty(h, q, dtype=dtype))
        self.post_attn_norm = nn.Parameter(torch.ones(h, dtype=dtype))
        self.gate_up_proj = nn.Parameter(torch.empty(2 * i, h, dtype=dtype))
        self.down_proj = nn.Parameter(torch.empty(h, i, dtype=dtype))
        self.scale = cfg.head_dim**-0.5
        # a float8 KV cache stores k / k_scale and v / v_scale (checkpoint values, else 1.0)
        self.k_scale = 1.0
        self.v_scale = 1.0

    def operations(self) -> list[Operation]:
        g, a, o = OpKind.GEMM, OpKind.ATTENTION, OpKind.OTHER
        return [
            Operation("input_norm", o, self._input_norm),
            Operation("qkv_proj", g, self._qkv_proj),
            Operation("rope", o, self._rope),
            Operation("store_kv", o, self._store_kv),
            Operation("attention", a, self._attention),
            Operation("o_proj", g, self._o_proj),
            Operation("post_attn_norm", o, self._post_attn_norm),
            Operation("gate_up_proj", g, self._gate_up_proj),
            Operation("act", o, self._act),
            Operation("down_proj", g, self._down_proj),
        ]

    def _input_norm(self, x: Activations, ctx: ForwardContext) -> None:
        eps = self.cfg.rms_norm_eps
        if x.residual is None:
            x.residual = x.hidden
            x.hidden = ctx.ops.rms_norm(x.hidden, self.input_norm, eps)
        else:
            x.hidden, x.residual = ctx.ops.add_rms_norm(x.hidden, x.residual, self.input_norm, eps)

    def _qkv_proj(self, x: Activations, ctx: ForwardContext) -> None:
        x.qkv = ctx.ops.linear(x.hidden, self.qkv_proj, self.qkv_bias)

    def _rope(self, x: Activations, ctx: ForwardContext) -> None:
        assert x.qkv is not None
        c = self.cfg
        q, k, v = x.qkv.split([c.q_size, c.kv_size, c.kv_size], dim=-1)
        q = q.view(-1, c.num_heads, c.head_dim)
        k = k.view(-1, c.num_kv_heads, c.head_dim)
        v = v.view(-1, c.num_kv_heads, c.head_dim)
        if ctx.ops.rotary_store_kv is None:
            x.q, x.k = ctx.ops.rotary(q, k, ctx.positions, self.cos_sin)
            x.v = v
            return
        # one kernel: q rotated; k rotated and stored with v in their cache slots
        k_cache, v_cache = ctx.kv_caches[self.index]
        x.q = ctx.ops.rotary_store_kv(
            q, k, v, ctx.positions, self.cos_sin, k_cache, v_cache, ctx.attn.slot_mapping,
            self.k_scale, self.v_scale,
        )  # fmt: skip
        x.k = x.v = None

    def _store_kv(self, x: Activations, ctx: ForwardContext) -> None:
        if ctx.ops.rotary_store_kv is not None:
            return  # the rope operation stored k and v
        k_cache, v_cache = ctx.kv_caches[self.index]
        ctx.ops.store_kv(
            x.k, x.v, k_cache, v_cache, ctx.attn.slot_mapping, self.k_scale, self.v_scale
        )

    def _attention(self, x: Activations, ctx: ForwardContext) -> None:
        assert x.q is not None
        k_cache, v_cache = ctx.kv_caches[self.index]
        out = ctx.ops.paged_attention.forward(
            x.q, k_cache, v_cache, ctx.attn, self.scale, self.k_scale, self.v_scale
        )
        x.attn = out.reshape(out.shape[0], -1)

    def _o_proj(self, x: Activations, ctx: ForwardContext) -> None:
        x.hidden = ctx.ops.linear(x.attn, self.o_proj)

    def _post_attn_norm(self, x: Activations, ctx: ForwardContext) -> None:
        assert x.residual is not None
        eps = self.cfg.rms_norm_eps
        x.hidden, x.residual = ctx.ops.add_rms_norm(x.hidden, x.residual, self.post_attn_norm, eps)

    def _gate_up_proj(self, x: Activations, ctx: ForwardContext) -> None:
        x.gate_up = ctx.ops.linear(x.hidden, self.gate_up_proj)

    def _act(self, x: Activations, ctx: ForwardContext) -> None:
        x.act = ctx.ops.silu_and_mul(x.gate_up)

    def _down_proj(self, x: Activations, ctx: ForwardContext) -> None:
        x.hidden = ctx.ops.linear(x.act, self.down_proj)


class LlamaModel(nn.Module):
    """Embedding, decoder layers, final norm and LM head, with weights fused for speed."""

    def __init__(self, cfg: ModelConfig, dtype: torch.dtype, max_positions: int) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed_tokens = nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size, dtype=dtype))
        self.layers = nn.ModuleList(DecoderLayer(cfg, i, dtype) for i in range(cfg.num_layers))
        self.norm = nn.Parameter(torch.ones(cfg.hidden_size, dtype=dtype))
        self.lm_head = (
            None
            if cfg.tie_word_embeddings
            else nn.Parameter(torch.empty(cfg.vocab_size, cfg.hidden_size, dtype=dtype))
        )
        cos_sin = cos_sin_cache(cfg.rope, cfg.head_dim, max_positions)
        self.register_buffer("cos_sin", cos_sin, persistent=False)
        for layer in self.layers:
            layer.cos_sin = cos_sin  # shared table; moved with the model by _apply below

    def _apply(self, fn, recurse=True):  # type: ignore[no-untyped-def]
        super()._apply(fn, recurse)
        for layer in self.layers:
            layer.cos_sin = self.cos_sin
        return self

    def operations(self) -> list[list[Operation]]:
        """Per layer, the operations in execution order."""
        return [layer.operations() for layer in self.layers]  # type: ignore[operator]

    def embed(self, input_ids: torch.Tensor) -> torch.Tensor:
        """input_ids [T] -> embeddings [T, H] (a tensor-parallel rewrite replaces this)."""
        return self.embed_tokens.index_select(0, input_ids)

    @torch.inference_mode()
    def forward(self, input_ids: torch.Tensor, ctx: ForwardContext) -> torch.Tensor:
        """input_ids [T] -> final hidden states [T, H] (normed)."""
        x = Activations(hidden=self.embed(input_ids))
        for layer_ops in self.operations():
            for op in layer_ops:
                if ctx.op_hook is None:
                    op.run(x, ctx)
                else:
                    ctx.op_hook(op, lambda op=op: op.run(x, ctx))  # type: ignore[misc]
        assert x.residual is not None
        hidden, _ = ctx.ops.add_rms_norm(x.hidden, x.residual, self.norm, self.cfg.rms_norm_eps)
        return hidden

    @torch.inference_mode()
    def compute_logits(
        self, hidden: torch.Tensor, ops: Ops, out: torch.Tensor | None = None
    ) -> torch.Tensor:
        """hidden [N, H] -> logits [N, V] in the LM head's dtype (written into ``out`` when
        given). Not widened here: a greedy batch takes its argmax as they are (widening bf16 is
        exact, so the tokens are the same), and sampling widens to float32 where it computes."""
        head = self.embed_tokens if self.lm_head is None else self.lm_head
        return ops.linear(hidden, head) if out is None else ops.linear(hidden, head, out=out)
