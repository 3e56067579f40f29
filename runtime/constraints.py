"""Regex and JSON-schema constraints as token masks, through outlines-core.

The tokenizer's vocabulary is converted once into outlines-core's byte-level ``Vocabulary``; each
distinct pattern is compiled once into an ``Index`` (a token-level automaton, cached) and every
constrained request walks its own ``Guide`` over it.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any

import torch
from outlines_core import Guide, Index, Vocabulary
from outlines_core.json_schema import build_regex_from_schema

from runtime.sampling_params import ConstraintError


def _byte_decoder() -> dict[str, int]:
    # inverse of GPT-2's bytes_to_unicode: the printable stand-ins byte-level BPE uses for bytes
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(ord("¡"), ord("¬") + 1))
    bs += list(range(ord("®"), ord("ÿ") + 1))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    return {chr(c): b for b, c in zip(bs, cs, strict=True)}


def token_bytes(token: str, byte_level: bool, decoder: dict[str, int]) -> bytes | None:
    """The bytes a vocabulary entry stands for (None when it cannot be mapped)."""
    if byte_level:
        try:
            return bytes(decoder[ch] for ch in token)
        except KeyError:
            return None
    if token.startswith("<0x") and token.endswith(">") and len(token) == 6:
        return bytes([int(token[3:5], 16)])
    return token.replace("▁", " ").encode("utf-8")


def build_vocabulary(tokenizer: Any, eos_token_id: int) -> Vocabulary:
    """outlines-core vocabulary of all non-special tokens of a Hugging Face tokenizer."""
    vocab: dict[str, int] = tokenizer.get_vocab()
    special = set(getattr(tokenizer, "all_special_ids", []))
    special |= set(getattr(tokenizer, "added_tokens_decoder", {}) or {})
    decoder = _byte_decoder()
    byte_level = all(ch in decoder for tok in list(vocab)[:200] for ch in tok)
    mapping: dict[bytes, list[int]] = {}
    for tok, idx in vocab.items():
        if idx in special or idx == eos_token_id:
            continue
        raw = token_bytes(tok, byte_level, decoder)
        if raw:
            mapping.setdefault(raw, []).append(idx)
    return Vocabulary(eos_token_id, mapping)


def schema_to_regex(schema: str) -> str:
    try:
        json.loads(schema)
        return build_regex_from_schema(schema)
    except (ValueError, TypeError) as exc:
        raise ConstraintError(f"invalid JSON schema: {exc}") from exc


class ConstraintCompiler:
    """Compiles patterns against one tokenizer's vocabulary, caching each compiled index."""

    def __init__(self, tokenizer: Any, eos_token_id: int, vocab_size: int) -> None:
        self.vocabulary = build_vocabulary(tokenizer, eos_token_id)
        self.vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self._index = lru_cache(maxsize=256)(self._build_index)

    def _build_index(self, regex: str) -> Index:
        try:
            return Index(regex, self.vocabulary)
        except (ValueError, RuntimeError) as exc:
            raise ConstraintError(f"cannot compile regex {regex!r}: {exc}") from exc

    def compile(self, regex: str | None, json_schema: str | None) -> TokenConstraint:
        pattern = regex if regex is not None else schema_to_regex(json_schema or "")
        return TokenConstraint(Guide(self._index(pattern)), self.vocab_size, self.eos_token_id)


class TokenConstraint:
    """One request's position in a compiled pattern."""

    def __init__(self, guide: Guide, vocab_size: int, eos_token_id: int) -> None:
        self.guide, self.vocab_size, self.eos_token_id = guide, vocab_size, eos_token_id

    def allowed_mask(self) -> torch.Tensor:
        """[vocab_size] bool: the tokens that keep the output a prefix of a match."""
        mask = torch.zeros(self.vocab_size, dtype=torch.bool)
        allowed = [t for t in self.guide.get_tokens() if t < self.vocab_size]
        mask[allowed] = True
        return mask

    def advance(self, token_id: int) -> None:
        if token_id != self.eos_token_id:
            self.guide.advance(token_id)

    def only_eos_allowed(self) -> bool:
        return self.guide.get_tokens() == [self.eos_token_id]
