"""Incremental detokenization: deltas add up to the whole decode, multi-byte characters are held
back until complete, and stop strings are found where they end."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from runtime.detokenizer import IncrementalDetokenizer, find_stop
from runtime.tokenizer import load_tokenizer


@pytest.fixture(scope="module")
def tokenizer(tiny_llama: str) -> Any:
    return load_tokenizer(Path(tiny_llama))


@pytest.mark.parametrize(
    "text", ["The answer is 42.", "naïve café, 東京 and émoji 🎉!", " leading space\nnew line"]
)
def test_deltas_add_up_to_the_decoded_output(tokenizer: Any, text: str) -> None:
    prompt = tokenizer.encode("Question: ", add_special_tokens=False)
    output = tokenizer.encode(text, add_special_tokens=False)
    detok = IncrementalDetokenizer(tokenizer, prompt)
    deltas = [detok.append(token) for token in output]
    assert "".join(deltas) == detok.text
    whole = tokenizer.decode(prompt + output, skip_special_tokens=True)
    assert whole == tokenizer.decode(prompt, skip_special_tokens=True) + detok.text
    assert all("\ufffd" not in delta for delta in deltas)


def test_special_tokens_add_no_text(tokenizer: Any) -> None:
    detok = IncrementalDetokenizer(tokenizer, tokenizer.encode("Hi", add_special_tokens=False))
    assert detok.append(tokenizer.eos_token_id) == ""


def test_find_stop_reports_the_earliest_stop_in_the_new_text() -> None:
    assert find_stop("abc STOP def END", 8, ("END", "STOP")) == (13, "END")
    assert find_stop("abc STOP def END", 13, ("END", "STOP")) == (4, "STOP")
    assert find_stop("abc", 3, ("x",)) is None
