"""Incremental detokenization and stop-string matching for one request."""

from __future__ import annotations

from typing import Any


class IncrementalDetokenizer:
    """Turns output tokens into text as they arrive, holding back incomplete UTF-8 sequences.

    Decodes a small window of tokens each step (from ``prefix_offset``), so the cost per token does
    not grow with the output length, and tokenizers that merge spaces across tokens still decode
    correctly.
    """

    def __init__(self, tokenizer: Any, prompt_token_ids: list[int]) -> None:
        self.tokenizer = tokenizer
        self.ids: list[int] = list(prompt_token_ids[-6:])
        self.prefix_offset = 0
        self.read_offset = len(self.ids)
        self.text = ""

    def _decode(self, ids: list[int]) -> str:
        return self.tokenizer.decode(ids, skip_special_tokens=True)

    def append(self, token_id: int) -> str:
        """Add one token; return the text it completes (may be empty)."""
        self.ids.append(token_id)
        prefix = self._decode(self.ids[self.prefix_offset : self.read_offset])
        full = self._decode(self.ids[self.prefix_offset :])
        if len(full) > len(prefix) and not full.endswith("\ufffd"):
            delta = full[len(prefix) :]
            self.prefix_offset = self.read_offset
            self.read_offset = len(self.ids)
            self.text += delta
            return delta
        return ""


def find_stop(text: str, new_len: int, stops: tuple[str, ...]) -> tuple[int, str] | None:
    """Earliest stop string that ends within the last ``new_len`` chars: (start index, stop)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        start_search = max(0, len(text) - new_len - len(stop) + 1)
        idx = text.find(stop, start_search)
        if idx != -1 and (best is None or idx < best[0]):
            best = (idx, stop)
    return best
