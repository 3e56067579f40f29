"""Token ids remembered across instances: the same ids as the tokenizer's, each distinct text
(and special-token setting) tokenised once."""

from __future__ import annotations

from typing import Any

from nanolang.run.context import Context
from nanolang.run.token_cache import TokenCache


class CountingTokenizer:
    """Wraps a real tokenizer and notes every text it is asked to encode."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[tuple[str, bool]] = []
        self.bos_token_id = inner.bos_token_id

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        self.calls.append((text, add_special_tokens))
        return self.inner.encode(text, add_special_tokens=add_special_tokens)


def test_frozen_contexts_take_the_tokenizers_ids_once_per_text(tokenizer: Any) -> None:
    counting = CountingTokenizer(tokenizer)
    cache = TokenCache(counting)
    frozen = []
    for question in ("seven apples", "three rivers", "seven apples"):
        ctx = Context()
        ctx.append(f"Question: {question}")
        first = ctx.freeze(counting, cache)
        ctx.append("\nAnswer:")
        frozen.append((first, ctx.freeze(counting, cache)))
        plain = Context()
        plain.append(f"Question: {question}")
        assert first == plain.freeze(tokenizer)  # the first piece gets BOS, as without a cache
        plain.append("\nAnswer:")
        assert frozen[-1][1] == plain.freeze(tokenizer)
    assert frozen[0] == frozen[2]
    texts = [text for text, _ in counting.calls]
    assert texts.count("\nAnswer:") == 1 and texts.count("Question: seven apples") == 1


def test_special_tokens_are_part_of_the_key(tokenizer: Any) -> None:
    cache = TokenCache(tokenizer)
    with_bos, without = cache.encode("Hello", True), cache.encode("Hello", False)
    assert list(with_bos) == tokenizer.encode("Hello", add_special_tokens=True)
    assert list(without) == tokenizer.encode("Hello", add_special_tokens=False)
    assert cache.count("Hello") == len(without) and cache.count("") == 0


def test_the_cache_forgets_everything_at_its_limit() -> None:
    tokenizer = _Chars()
    cache = TokenCache(tokenizer, limit=2)
    assert [cache.count(t) for t in ("ab", "cde", "ab", "fghi", "ab", "")] == [2, 3, 2, 4, 2, 0]
    assert tokenizer.texts == ["ab", "cde", "fghi", "ab"]  # "ab" again after the clear


class _Chars:
    """One token per character; notes each text."""

    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.texts.append(text)
        return [ord(c) for c in text]
