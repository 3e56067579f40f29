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


_M32 = 0xFFFFFFFF


def _mix32(x: torch.Tensor) -> torch.Tensor:
    """murmur3's 32-bit finaliser on int64 tensors holding 32-bit values (exact on any device)."""
    x = x ^ (x >> 16)
    x = (x * 0x85EBCA6B) & _M32
    x = x ^ (x >> 13)
    x = (x * 0xC2B2AE35) & _M32
    return x ^ (x >> 16)


def exponential_noise(keys: list[int], vocab_size: int, device: torch.device) -> torch.Tensor:
    """[R, V] float32 ~ Exp(1) noise, a pure function of each row's 63-bit key and the token index.

    Counter-based (hashing, no generator state), so it is the same on the CPU and the GPU, costs a
    few elementwise passes on the device, and one row never depends on the others.
    """
    key = torch.tensor(keys, dtype=torch.int64, device=device)
    lo, hi = (key & _M32).unsqueeze(1), ((key >> 32) & _M32).unsqueeze(1)
    idx = torch.arange(vocab_size, dtype=torch.int64, device=device).unsqueeze(0)
    x = _mix32(lo ^ ((idx * 0x9E3779B1) & _M32))
    x = _mix32(x ^ hi)
    u = ((x >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))  # uniform in (0, 1)
    return -torch.log(u)


@dataclass(frozen=True)
class SamplingBatch:
    """Per-row sampling inputs [R] for the R rows that sample this iteration."""

    temperature: torch.Tensor
    top_p: torch.Tensor
    top_k: torch.Tensor
    min_p: torch.Tensor
    noise: torch.Tensor | None  # [R, V] ~ Exp(1), on the device already; None if all rows greedy
    mask: torch.Tensor | None  # [R, V] bool, allowed tokens; None when no row is constrained

    @staticmethod
    def build(seqs: list[Sequence], vocab_size: int, device: torch.device) -> SamplingBatch:
        params = [s.params for s in seqs]
        noise = None
        if not all(p.greedy for p in params):
            keys = [step_seed(s.seed, len(s.output_token_ids)) for s in seqs]
            noise = exponential_noise(keys, vocab_size, device)
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
            noise=self.noise,
            mask=None if self.mask is None else self.mask.to(device, non_blocking=True),
        )


def sample(
    logits: torch.Tensor, batch: SamplingBatch, ops: Ops, want_logprobs: bool = True
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """logits [R, V] float32 -> (token ids [R], their log-probabilities under the raw model [R],
    or None when not wanted)."""
    logprobs = torch.log_softmax(logits, dim=-1) if want_logprobs else None
    if batch.mask is not None:
        logits = logits.masked_fill(~batch.mask, float("-inf"))
    if batch.noise is None:  # every row greedy
        tokens = logits.argmax(dim=-1)
    else:
        b = batch
        tokens = ops.sample(logits, b.temperature, b.top_p, b.top_k, b.min_p, b.noise)
    if logprobs is None:
        return tokens, None
    return tokens, logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
