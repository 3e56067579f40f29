"""Sampling of the next token for each sampling row, reproducible per request."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import Ops
from runtime.sequence import Sequence

_MIX = 0x9E3779B97F4A7C15
_MASK63 = (1 << 63) - 1


def step_seed(seed: int, step: int) -> int:
    """A seed for the ``step``-th token of a request: depends on nothing else in the batch."""
    return ((seed * _MIX) ^ (step * 0xBF58476D1CE4E5B9) ^ (step << 17)) & _MASK63


@dataclass(frozen=True)
class SamplingBatch:
    """Per-row sampling inputs [R] for the R rows that sample this iteration."""

    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    min_p: torch.Tensor
    noise: torch.Tensor  # [R, V] ~ Exp(1), ones for greedy rows
    mask: torch.Tensor | None  # [R, V] bool, allowed tokens; None when no row is constrained

    @staticmethod
    def build(seqs: list[Sequence], vocab_size: int, device: torch.device) -> SamplingBatch:
        params = [s.params for s in seqs]
        noise = torch.ones(len(seqs), vocab_size)
        for row, seq in enumerate(seqs):
            if not seq.params.greedy:
                gen = torch.Generator().manual_seed(step_seed(seq.seed, len(seq.output_token_ids)))
                noise[row].exponential_(generator=gen)
        mask = None
        if any(s.constraint is not None for s in seqs):
            mask = torch.ones(len(seqs), vocab_size, dtype=torch.bool)
            for row, seq in enumerate(seqs):
                if seq.constraint is not None:
                    mask[row] = seq.constraint.allowed_mask()
        return SamplingBatch(
            temperature=torch.tensor([p.temperature for p in params], dtype=torch.float32),
            top_p=torch.tensor([p.top_p for p in params], dtype=torch.float32),
            top_k=torch.tensor([p.top_k for p in params], dtype=torch.int64),
            min_p=torch.tensor([p.min_p for p in params], dtype=torch.float32),
            noise=noise,
            mask=mask,
        ).to(device)

    def to(self, device: torch.device) -> SamplingBatch:
        if device.type == "cpu":
            return self
        return SamplingBatch(
            temperature=self.temperature.to(device, non_blocking=True),
            top_p=self.top_p.to(device, non_blocking=True),
            top_k=self.top_k.to(device, non_blocking=True),
            min_p=self.min_p.to(device, non_blocking=True),
            noise=self.noise.to(device, non_blocking=True),
            mask=None if self.mask is None else self.mask.to(device, non_blocking=True),
        )


def sample(
    logits: torch.Tensor, batch: SamplingBatch, ops: Ops
) -> tuple[torch.Tensor, torch.Tensor]:
    """logits [R, V] float32 -> (token ids [R], their log-probabilities under the raw model [R])."""
    logprobs = torch.log_softmax(logits, dim=-1)
    if batch.mask is not None:
        logits = logits.masked_fill(~batch.mask, float("-inf"))
    tokens = ops.sample(
        logits, batch.temperature, batch.top_p, batch.top_k, batch.min_p, batch.noise
    )
    return tokens, logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
