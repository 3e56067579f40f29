"""Sampling of the next token for each sampling row, reproducible per request."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from kernels import Ops
from runtime.host_copy import list_to_device, to_device
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
    key = list_to_device(keys, torch.int64, device)
    lo, hi = (key & _M32).unsqueeze(1), ((key >> 32) & _M32).unsqueeze(1)
    idx = torch.arange(vocab_size, dtype=torch.int64, device=device).unsqueeze(0)
    x = _mix32(lo ^ ((idx * 0x9E3779B1) & _M32))
    x = _mix32(x ^ hi)
    u = ((x >> 8).to(torch.float32) + 0.5) * (1.0 / (1 << 24))  # uniform in (0, 1)
    return -torch.log(u)


@dataclass(frozen=True)
class SamplingSpec:
    """The host side of a ``SamplingBatch``: plain, picklable data built from the sequences
    (what a tensor-parallel driver sends to the rank that samples). Noise is described by its
    per-row keys and drawn on the device by ``to_batch``."""

    temperature: list[float]
    top_p: list[float]
    top_k: list[int]
    min_p: list[float]
    noise_keys: list[int] | None  # per row; None if all rows greedy
    mask: torch.Tensor | None  # [R, V] bool, allowed tokens; None when no row is constrained
    bias: torch.Tensor | None = None  # [R, V] float32 (penalties, logit_bias, min_tokens)
    repetition: torch.Tensor | None = None  # [R, V] float32 repetition factor

    @staticmethod
    def from_seqs(seqs: list[Sequence], vocab_size: int) -> SamplingSpec:
        params = [s.params for s in seqs]
        keys = None
        if not all(p.greedy for p in params):
            keys = [step_seed(s.seed, len(s.output_token_ids)) for s in seqs]
        mask = None
        if any(s.constraint is not None for s in seqs):
            mask = torch.ones(len(seqs), vocab_size, dtype=torch.bool)
            for row, seq in enumerate(seqs):
                if seq.constraint is not None:
                    mask[row] = seq.constraint.allowed_mask()
        bias, repetition = logit_adjustments(seqs, vocab_size)
        return SamplingSpec(
            temperature=[p.temperature for p in params],
            top_p=[p.top_p for p in params],
            top_k=[p.top_k for p in params],
            min_p=[p.min_p for p in params],
            noise_keys=keys,
            mask=mask,
            bias=bias,
            repetition=repetition,
        )

    def to_batch(self, vocab_size: int, device: torch.device) -> SamplingBatch:
        """The device side. A batch of greedy rows only gets no per-row parameters (the argmax
        reads none): four fewer copies to the device in each such iteration."""
        if self.noise_keys is None:
            return SamplingBatch(
                None, None, None, None, None, self.mask, self.bias, self.repetition
            ).to(device)
        return SamplingBatch(
            temperature=torch.tensor(self.temperature, dtype=torch.float32),
            top_p=torch.tensor(self.top_p, dtype=torch.float32),
            top_k=torch.tensor(self.top_k, dtype=torch.int64),
            min_p=torch.tensor(self.min_p, dtype=torch.float32),
            noise=exponential_noise(self.noise_keys, vocab_size, device),
            mask=self.mask,
            bias=self.bias,
            repetition=self.repetition,
        ).to(device)


@dataclass(frozen=True)
class SamplingBatch:
    """Per-row sampling inputs [R] for the R rows that sample this iteration. When every row is
    greedy there is no noise and no per-row parameter (all four None)."""

    temperature: torch.Tensor | None
    top_p: torch.Tensor | None
    top_k: torch.Tensor | None
    min_p: torch.Tensor | None
    noise: torch.Tensor | None  # [R, V] ~ Exp(1), on the device already; None if all rows greedy
    mask: torch.Tensor | None  # [R, V] bool, allowed tokens; None when no row is constrained
    bias: torch.Tensor | None = None  # [R, V] float32 added to logits (penalties, logit_bias)
    repetition: torch.Tensor | None = None  # [R, V] float32 repetition factor (1 = unseen)

    def to(self, device: torch.device) -> SamplingBatch:
        if device.type == "cpu":
            return self
        return SamplingBatch(
            temperature=_maybe_to_device(self.temperature, device),
            top_p=_maybe_to_device(self.top_p, device),
            top_k=_maybe_to_device(self.top_k, device),
            min_p=_maybe_to_device(self.min_p, device),
            noise=self.noise,
            mask=_maybe_to_device(self.mask, device),
            bias=_maybe_to_device(self.bias, device),
            repetition=_maybe_to_device(self.repetition, device),
        )

    @property
    def adjusts(self) -> bool:
        """Whether anything changes the logits before the choice (penalties, bias, a mask)."""
        return self.repetition is not None or self.bias is not None or self.mask is not None


def _maybe_to_device(t: torch.Tensor | None, device: torch.device) -> torch.Tensor | None:
    return None if t is None else to_device(t, device)


def logit_adjustments(
    seqs: list[Sequence], vocab_size: int
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Host-built [R, V] additive bias (presence / frequency penalties, logit_bias, min_tokens)
    and multiplicative repetition factors, or None when no row asks for them. Needs each row's
    output tokens on the host (the engine reads such iterations back before the next)."""
    if not any(s.params.adjusts_logits for s in seqs):
        return None, None
    bias = torch.zeros(len(seqs), vocab_size, dtype=torch.float32)
    repetition = None
    for row, seq in enumerate(seqs):
        p = seq.params
        out = torch.tensor(
            [t for t in seq.output_token_ids if 0 <= t < vocab_size], dtype=torch.long
        )
        if p.presence_penalty or p.frequency_penalty:
            counts = torch.bincount(out, minlength=vocab_size).to(torch.float32)
            bias[row] -= p.frequency_penalty * counts + p.presence_penalty * (counts > 0)
        if p.repetition_penalty != 1.0:
            if repetition is None:
                repetition = torch.ones(len(seqs), vocab_size, dtype=torch.float32)
            seen = torch.tensor(seq.prompt_token_ids, dtype=torch.long)
            repetition[row, torch.cat([seen, out])] = p.repetition_penalty
        for token, value in p.logit_bias:
            if 0 <= token < vocab_size:
                bias[row, token] += value
        if len(seq.output_token_ids) < p.min_tokens:
            banned = [t for t in (*seq.eos_token_ids, *p.stop_token_ids) if 0 <= t < vocab_size]
            bias[row, banned] = float("-inf")
    return bias, repetition


@dataclass(frozen=True)
class Sampled:
    """What sampling produced for R rows: tokens, their raw-model logprobs, and the top k."""

    tokens: torch.Tensor  # [R] int64
    logprobs: torch.Tensor | None  # [R] float32, or None when not wanted
    top_ids: torch.Tensor | None  # [R, k] int64, or None when k == 0
    top_logprobs: torch.Tensor | None  # [R, k] float32


def sample(
    logits: torch.Tensor,
    batch: SamplingBatch,
    ops: Ops,
    want_logprobs: bool = True,
    num_top: int = 0,
) -> Sampled:
    """logits [R, V] (the model's dtype) -> the sampled tokens, their log-probabilities under the
    raw model (when wanted) and the ``num_top`` most likely tokens of the raw model with theirs.
    Everything is computed in float32, except a plain greedy choice: the argmax of the logits as
    they are, which is the argmax of their exact float32 widening."""
    logprobs = None
    if want_logprobs or num_top:
        logprobs = torch.log_softmax(logits, dim=-1, dtype=torch.float32)
    if batch.adjusts or batch.noise is not None:
        logits = logits.float()
    if batch.repetition is not None:
        r = batch.repetition
        logits = torch.where(logits > 0, logits / r, logits * r)
    if batch.bias is not None:
        logits = logits + batch.bias
    if batch.mask is not None:
        logits = logits.masked_fill(~batch.mask, float("-inf"))
    if batch.noise is None:  # every row greedy
        tokens = ops.argmax(logits)
    else:
        b = batch
        assert b.temperature is not None and b.top_p is not None, "noise without its parameters"
        assert b.top_k is not None and b.min_p is not None, "noise without its parameters"
        tokens = ops.sample(logits, b.temperature, b.top_p, b.top_k, b.min_p, b.noise)
    if logprobs is None:
        return Sampled(tokens, None, None, None)
    chosen = logprobs.gather(1, tokens.unsqueeze(1)).squeeze(1)
    if not num_top:
        return Sampled(tokens, chosen, None, None)
    top = logprobs.topk(num_top, dim=-1)
    return Sampled(tokens, chosen, top.indices, top.values)
