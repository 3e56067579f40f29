"""Incremental detokenization and stop-string matching for one request."""

from __future__ import annotations

from typing import Any

from tokenizers.decoders import DecodeStream


class IncrementalDetokenizer:
    """Turns output tokens into text as they arrive, with ``tokenizers``' ``DecodeStream``.

    The stream holds back incomplete UTF-8 sequences and decodes a small window each step (so the
    cost per token does not grow with the output). It starts from the prompt's last tokens, so the
    first output token decodes as it reads after the prompt (a leading space is not dropped).
    """

    def __init__(self, tokenizer: Any, prompt_token_ids: list[int]) -> None:
        self._tokenizer = tokenizer.backend_tokenizer  # the Rust tokenizer of an HF tokenizer
        self._stream = DecodeStream(ids=list(prompt_token_ids[-6:]), skip_special_tokens=True)
        self.text = ""

    def append(self, token_id: int) -> str:
        """Add one token; return the text it completes (may be empty)."""
        delta = self._stream.step(self._tokenizer, token_id) or ""
        self.text += delta
        return delta


def find_stop(text: str, new_len: int, stops: tuple[str, ...]) -> tuple[int, str] | None:
    """Earliest stop string that ends within the last ``new_len`` chars: (start index, stop)."""
    best: tuple[int, str] | None = None
    for stop in stops:
        start_search = max(0, len(text) - new_len - len(stop) + 1)
        idx = text.find(stop, start_search)
        if idx != -1 and (best is None or idx < best[0]):
            best = (idx, stop)
    return best
