"""Comparing two engines' greedy outputs where a near-tie may flip a low-precision token."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def agreeing_prefixes(
    reference: Sequence[Any], outputs: Sequence[Any], min_same: int, tag: object = None,
    tolerance: float = 0.1,
) -> int:  # fmt: skip
    """How many sequences agree on at least their first ``min_same`` tokens. Up to each
    sequence's first differing token, and that token too, the log-probabilities must match
    within ``tolerance`` (a flipped near-tie, not a wrong kernel); ``tag`` names a failure."""
    agreeing = 0
    for r, o in zip(reference, outputs, strict=True):
        pairs = zip(r.token_ids, o.token_ids, strict=True)
        same = next((i for i, (a, b) in enumerate(pairs) if a != b), len(r.token_ids))
        agreeing += same >= min_same
        assert r.logprobs is not None and o.logprobs is not None
        for i in range(min(same + 1, len(r.token_ids))):
            assert abs(r.logprobs[i] - o.logprobs[i]) < tolerance, (tag, i)
    return agreeing
