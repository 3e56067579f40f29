"""Token ids of texts, remembered across the instances of one executor.

The instances of a program share most of their text: literal text between calls, a few-shot
header, role headers. Each distinct text is tokenised once (the ids are the tokenizer's own, so
nothing changes but the cost): a thousand instances' footprint checks and context freezes would
otherwise tokenise the same strings a thousand times, and a tokenizer call also gives up the
interpreter lock, which the engine's thread then holds for a while.
"""

from __future__ import annotations

from typing import Any


class TokenCache:
    """``tokenizer.encode(text, add_special_tokens=...)``, remembered for at most ``limit``
    texts (all are forgotten when the limit is reached)."""

    def __init__(self, tokenizer: Any, limit: int = 16384) -> None:
        self.tokenizer = tokenizer
        self.limit = limit
        self._ids: dict[tuple[str, bool], tuple[int, ...]] = {}

    def encode(self, text: str, add_special_tokens: bool = False) -> tuple[int, ...]:
        key = (text, add_special_tokens)
        ids = self._ids.get(key)
        if ids is None:
            ids = tuple(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))
            if len(self._ids) >= self.limit:
                self._ids.clear()
            self._ids[key] = ids
        return ids

    def count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (0 for no text)."""
        return len(self.encode(text)) if text else 0
