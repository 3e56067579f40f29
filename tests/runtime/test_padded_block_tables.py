"""Block tables padded by one numpy scatter: the same tensor as the padded nested list."""

from __future__ import annotations

import random

import torch

from runtime.step_plan import padded_block_tables


def test_padded_block_tables_match_the_nested_list() -> None:
    rng = random.Random(0)
    for _ in range(20):
        tables = [[rng.randrange(10**6) for _ in range(rng.randrange(1, 40))]
                  for _ in range(rng.randrange(1, 30))]  # fmt: skip
        width = max(map(len, tables))
        expected = torch.tensor([t + [0] * (width - len(t)) for t in tables], dtype=torch.int32)
        got = torch.from_numpy(padded_block_tables(tables))
        assert got.dtype == torch.int32 and torch.equal(got, expected)
