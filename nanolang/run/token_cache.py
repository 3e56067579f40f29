"""Token ids of texts, remembered across the instances of one executor.

The instances of a program share most of their text: literal text between calls, a few-shot
header, role headers. Each distinct text is tokenised once (the ids are the tokenizer's own, so
nothing changes but the cost): a thousand instances' footprint checks and context freezes would
otherwise tokenise the same strings a thousand times, and a tokenizer call also gives up the
interpreter lock, which the engine's thread then holds for a while.

A long text that is a shared header followed by an instance's own text is one distinct text per
instance: where the tokenizer allows it (``token_chunks``), such a text is tokenised as pieces
cut at hard boundaries, each piece remembered, so the header's pieces are tokenised once and
only the instance's own pieces are new. The ids are the same as the whole text's.
"""

from __future__ import annotations

from typing import Any

from nanolang.run.token_chunks import Cutter, cutter, special_prefix

MIN_CUT_CHARS = 512  # shorter texts are tokenised whole (cutting them saves little)


class TokenCache:
    """``tokenizer.encode(text, add_special_tokens=...)``, remembered for at most ``limit``
    texts (all are forgotten when the limit is reached)."""

    def __init__(self, tokenizer: Any, limit: int = 16384) -> None:
        self.tokenizer = tokenizer
        self.limit = limit
        self._ids: dict[tuple[str, bool], tuple[int, ...]] = {}
        self._cut: Cutter | None = None
        self._special: tuple[int, ...] | None = None
        self._probed = False

    def encode(self, text: str, add_special_tokens: bool = False) -> tuple[int, ...]:
        key = (text, add_special_tokens)
        ids = self._ids.get(key)
        if ids is not None:
            return ids
        pieces = self._pieces(text, add_special_tokens)
        if len(pieces) > 1:
            first = self.encode(pieces[0], add_special_tokens)
            ids = first + tuple(t for p in pieces[1:] for t in self.encode(p))
        else:
            ids = tuple(self.tokenizer.encode(text, add_special_tokens=add_special_tokens))
        self._remember(key, ids)
        return ids

    def count(self, text: str) -> int:
        """Tokens of ``text`` without special tokens (0 for no text)."""
        return len(self.encode(text)) if text else 0

    def _pieces(self, text: str, add_special_tokens: bool) -> list[str]:
        """``text`` cut at hard boundaries when that gives the same ids, else ``[text]``."""
        if len(text) < MIN_CUT_CHARS:
            return [text]
        if not self._probed:
            self._probed = True
            self._cut = cutter(self.tokenizer)
            if self._cut is not None:
                self._special = special_prefix(self.tokenizer)
        if self._cut is None or (add_special_tokens and self._special is None):
            return [text]
        return self._cut(text)

    def _remember(self, key: tuple[str, bool], ids: tuple[int, ...]) -> None:
        if len(self._ids) >= self.limit:
            self._ids.clear()
        self._ids[key] = ids
