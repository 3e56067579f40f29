"""Top-k / top-p / min-p sampling by the exponential race, without sorting.

The kept set of the reference (a prefix of the probabilities sorted descending) equals
``{i : p_i >= t}`` where ``t`` is the smallest probability at which all three filters still keep a
token: fewer than k tokens above it, less than top_p mass above it, and at least min_p * p_max.
Each predicate is monotone in t, so t is found by a bisection over float32 bit patterns (positive
floats order like their bits) in 32 passes over a scratch copy of the row's probabilities.
"""

from __future__ import annotations

import torch
import triton
import triton.language as tl

SEARCH_STEPS = 32  # bits of a float32: the bisection is exact after this many passes


@triton.jit
def _row_max_argmax(row_ptr, vocab, BLOCK: tl.constexpr):
    """(max, first index of the max) of one row of logits."""
    best = float("-inf")
    best_idx = 0
    for start in range(0, vocab, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        x = tl.load(row_ptr + offs, mask=offs < vocab, other=float("-inf"))
        block_max = tl.max(x, 0)
        block_idx = start + tl.argmax(x, 0, tie_break_left=True)
        better = block_max > best
        best_idx = tl.where(better, block_idx, best_idx)
        best = tl.where(better, block_max, best)
    return best, best_idx


@triton.jit
def _mass_above(probs_ptr, vocab, t, BLOCK: tl.constexpr):
    """(count, sum) of the row's probabilities strictly above t."""
    count = 0
    mass = 0.0
    for start in range(0, vocab, BLOCK):
        offs = start + tl.arange(0, BLOCK)
        p = tl.load(probs_ptr + offs, mask=offs < vocab, other=0.0)
        above = p > t
        count += tl.sum(above.to(tl.int32), 0)
        mass += tl.sum(tl.where(above, p, 0.0), 0)
    return count, mass


@triton.jit
def sample_kernel(
    logits_ptr,
    noise_ptr,
    probs_ptr,
    out_ptr,
    temperature_ptr,
    top_p_ptr,
    top_k_ptr,
    min_p_ptr,
    stride_l,
    stride_n,
    vocab,
    STEPS: tl.constexpr,
    BLOCK: tl.constexpr,
):
    row = tl.program_id(0).to(tl.int64)
    logits = logits_ptr + row * stride_l
    temp = tl.load(temperature_ptr + row)
    m, choice = _row_max_argmax(logits, vocab, BLOCK)  # greedy rows keep this argmax
    if temp != 0:
        m = m / temp
        # probabilities, kept in a scratch row for the bisection passes
        z = 0.0
        for start in range(0, vocab, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(logits + offs, mask=offs < vocab, other=float("-inf"))
            z += tl.sum(tl.exp(x / temp - m), 0)
        probs = probs_ptr + row * vocab
        for start in range(0, vocab, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            x = tl.load(logits + offs, mask=offs < vocab, other=float("-inf"))
            tl.store(probs + offs, tl.exp(x / temp - m) / z, mask=offs < vocab)
        p_max = 1.0 / z
        k = tl.load(top_k_ptr + row).to(tl.int32)
        k = tl.where((k <= 0) | (k > vocab), vocab, k)
        top_p = tl.load(top_p_ptr + row).to(tl.float32)
        floor = tl.load(min_p_ptr + row).to(tl.float32) * p_max
        lo = 0
        hi = p_max.to(tl.int32, bitcast=True)  # type: ignore[attr-defined]  # the threshold p_max always keeps the top token
        if (k < vocab) | (top_p < 1.0) | (floor > 0.0):
            for _ in range(STEPS):
                mid = lo + (hi - lo) // 2
                t = mid.to(tl.float32, bitcast=True)
                count, mass = _mass_above(probs, vocab, t, BLOCK)
                keep = (count < k) & (mass < top_p) & (t >= floor)
                hi = tl.where(keep, mid, hi)
                lo = tl.where(keep, lo, mid + 1)
        else:
            hi = 0
        threshold = hi.to(tl.float32, bitcast=True)
        best = -1.0
        noise = noise_ptr + row * stride_n
        for start in range(0, vocab, BLOCK):
            offs = start + tl.arange(0, BLOCK)
            mask = offs < vocab
            p = tl.load(probs + offs, mask=mask, other=0.0)
            e = tl.load(noise + offs, mask=mask, other=1.0)
            score = tl.where(mask & (p >= threshold), p, 0.0) / e
            block_best = tl.max(score, 0)
            block_idx = start + tl.argmax(score, 0, tie_break_left=True)
            better = block_best > best
            choice = tl.where(better, block_idx, choice)
            best = tl.where(better, block_best, best)
    tl.store(out_ptr + row, choice.to(tl.int64))


def sample(
    logits: torch.Tensor,
    temperature: torch.Tensor,
    top_p: torch.Tensor,
    top_k: torch.Tensor,
    min_p: torch.Tensor,
    noise: torch.Tensor,
) -> torch.Tensor:
    """One token per row of logits [B, V] (float32); see kernels.reference.sample."""
    batch, vocab = logits.shape
    assert logits.stride(-1) == 1 and noise.stride(-1) == 1
    out = torch.empty(batch, dtype=torch.long, device=logits.device)
    if batch == 0:
        return out
    probs = torch.empty((batch, vocab), dtype=torch.float32, device=logits.device)  # scratch
    sample_kernel[(batch,)](
        logits, noise, probs, out, temperature, top_p, top_k, min_p,
        logits.stride(0), noise.stride(0), vocab,
        STEPS=SEARCH_STEPS,
        BLOCK=min(triton.next_power_of_2(vocab), 4096),
        num_warps=8,
    )  # fmt: skip
    return out
