"""The Triton greedy argmax against torch.argmax: the same first index of each row's maximum,
exactly, across chunk boundaries, ties, -inf rows, dtypes and strided rows."""

from __future__ import annotations

import pytest
import torch

pytest.importorskip("triton")
from triton_env import DEVICE, INTERPRET, needs_triton_device, seeded

from kernels import reference
from kernels.triton import argmax
from kernels.triton.argmax import CHUNK

pytestmark = [pytest.mark.gpu, needs_triton_device]


def _check(logits: torch.Tensor) -> None:
    expected = reference.argmax(logits)
    out = argmax(logits)
    assert out.dtype == torch.int64 and out.shape == expected.shape
    assert torch.equal(out.cpu(), expected.cpu())


@pytest.mark.parametrize("dtype", [torch.bfloat16, torch.float16, torch.float32])
@pytest.mark.parametrize(
    ("rows", "vocab"), [(1, 1), (3, 5), (2, CHUNK), (5, CHUNK + 1), (4, 3 * CHUNK - 7)]
)
def test_random_rows(rows: int, vocab: int, dtype: torch.dtype) -> None:
    logits = (torch.randn(rows, vocab, generator=seeded(rows * vocab)) * 4).to(dtype)
    _check(logits.to(DEVICE))


def test_llama3_vocabulary() -> None:
    rows = 3 if INTERPRET else 257
    logits = (torch.randn(rows, 128_256, generator=seeded(7)) * 4).to(torch.bfloat16)
    _check(logits.to(DEVICE))


def test_ties_take_the_first_index_within_and_across_chunks() -> None:
    vocab = 3 * CHUNK + 100
    logits = torch.randn(5, vocab, generator=seeded(3))
    top = logits.max() + 1
    logits[0, [CHUNK + 5, 9, 2 * CHUNK]] = top  # across chunks: 9 wins
    logits[1, [CHUNK + 7, CHUNK + 3]] = top  # within a chunk, not the first: CHUNK + 3
    logits[2, [3 * CHUNK + 99, 3 * CHUNK + 1]] = top  # in the partial last chunk
    logits[3] = top  # every entry equal: 0
    logits[4, [2 * CHUNK - 1, 2 * CHUNK]] = top  # either side of a chunk boundary
    _check(logits.to(torch.bfloat16).to(DEVICE))
    assert argmax(logits.to(DEVICE)).tolist() == [9, CHUNK + 3, 3 * CHUNK + 1, 0, 2 * CHUNK - 1]


def test_infinite_rows() -> None:
    logits = torch.full((3, CHUNK + 10), float("-inf"))
    logits[1, CHUNK + 4] = -1e30  # one finite entry, in the second chunk
    logits[2, 17] = float("inf")
    _check(logits.to(DEVICE))
    assert argmax(logits.to(DEVICE)).tolist() == [0, CHUNK + 4, 17]


def test_strided_rows_and_an_empty_batch() -> None:
    wide = torch.randn(4, 2 * CHUNK, generator=seeded(5)).to(DEVICE)
    _check(wide[:, 3 : CHUNK + 50])  # rows of a wider tensor (row stride 2 x CHUNK)
    _check(wide[::2, :])  # every other row
    assert argmax(wide[:0]).shape == (0,)


def test_logits_that_are_not_rows_of_a_vocabulary_are_refused() -> None:
    for shape in ((5,), (2, 0), (2, 3, 4)):
        with pytest.raises(ValueError, match=r"argmax takes logits \[rows, vocab\]"):
            argmax(torch.zeros(shape, device=DEVICE))
