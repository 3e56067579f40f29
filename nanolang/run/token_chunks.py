"""Where a text can be cut so that its pieces, tokenised on their own, give the text's tokens.

A context's pending text is tokenised as one piece (``Context.freeze``). When that piece is a
long shared header followed by an instance's own text (a few-shot prompt), every instance would
tokenise the whole header again. For the tokenizers where it is exact, the text is cut at
**hard boundaries** instead: each piece is tokenised on its own, through the ``TokenCache``, so
the header's pieces are tokenised once per process, and the ids are the whole text's.

A hard boundary is a point between an ASCII letter and a newline. It is exact for a BPE model
(no dropout) without a normalizer, whose pre-tokenizer is a byte-level split by the GPT-2
regex or by the Llama-3 / cl100k regex, with no added token containing a newline:

- the model tokenises each pre-token on its own, so equal pre-tokens give equal ids;
- no alternative of those regexes matches across a letter followed by a newline (letter runs
  stop at any non-letter; whitespace and punctuation runs contain no letter), and a match that
  ends at such a point read nothing past it but the newline that stopped it, which in a piece
  on its own is the end of the text, with the same result; the regexes look nowhere behind,
  so the piece after the cut splits as it would inside the whole text;
- special tokens are found before the split, and none can span the cut (no newline in them,
  and none absorbs the whitespace beside it).

Anything else (another pre-tokenizer or regex, a normalizer, a tokenizer that is not a Hugging
Face fast tokenizer) is tokenised whole, as before.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

# the regexes of the byte-level BPE tokenizers whose splits are known (GPT-2's is ByteLevel's
# own, used when ``use_regex`` is set; Llama-3's equals cl100k's)
GPT2_PATTERN = r"'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"
LLAMA3_PATTERN = (
    r"(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*"
    r"|\s*[\r\n]+|\s+(?!\S)|\s+"
)
KNOWN_SPLITS = frozenset({LLAMA3_PATTERN})

Cutter = Callable[[str], list[str]]


def hard_pieces(text: str) -> list[str]:
    """``text`` cut at every point between an ASCII letter and a newline (one piece if none;
    a pass over its lines, several times faster than a look-behind regex)."""
    lines = text.split("\n")
    pieces = []
    piece = lines[0]
    for line in lines[1:]:
        end = piece[-1:]
        if end.isascii() and end.isalpha():
            pieces.append(piece)
            piece = "\n" + line
        else:
            piece += "\n" + line
    pieces.append(piece)
    return pieces


def cutter(tokenizer: Any) -> Cutter | None:
    """``hard_pieces`` when cutting is exact for ``tokenizer`` (see the module), else None."""
    backend = getattr(tokenizer, "backend_tokenizer", None)
    if backend is None or not hasattr(backend, "to_str"):
        return None
    try:
        spec = json.loads(backend.to_str())
    except (TypeError, ValueError):
        return None
    model = spec.get("model") or {}
    if model.get("type") != "BPE" or model.get("dropout") is not None:
        return None
    if spec.get("normalizer") is not None or not _known_pre_tokenizer(spec.get("pre_tokenizer")):
        return None
    for added in spec.get("added_tokens") or ():
        # a newline inside, or whitespace it absorbs, could make it span a cut
        absorbs = added.get("lstrip") or added.get("rstrip") or added.get("single_word")
        if absorbs or "\n" in str(added.get("content", "")):
            return None
    return hard_pieces


def _known_pre_tokenizer(pre: Any) -> bool:
    if not isinstance(pre, dict):
        return False
    if pre.get("type") == "ByteLevel":
        return bool(pre.get("use_regex", True)) and not pre.get("add_prefix_space", False)
    if pre.get("type") != "Sequence":
        return False
    steps = pre.get("pretokenizers") or []
    if len(steps) != 2:
        return False
    split, byte_level = steps
    pattern = (split.get("pattern") or {}).get("Regex")
    return (
        split.get("type") == "Split"
        and pattern in KNOWN_SPLITS
        and str(split.get("behavior", "")).lower() == "isolated"
        and not split.get("invert", False)
        and byte_level.get("type") == "ByteLevel"
        and not byte_level.get("use_regex", True)
        and not byte_level.get("add_prefix_space", False)
    )


def special_prefix(tokenizer: Any) -> tuple[int, ...] | None:
    """The ids ``add_special_tokens=True`` puts before a text, when that is all it adds (so the
    first piece alone carries them); None when it adds anything else (then texts that want
    special tokens are tokenised whole)."""
    probes = ("a", "b c", "x\ny")
    prefix: tuple[int, ...] | None = None
    for probe in probes:
        plain = tuple(tokenizer.encode(probe, add_special_tokens=False))
        full = tuple(tokenizer.encode(probe, add_special_tokens=True))
        if len(full) < len(plain) or full[len(full) - len(plain) :] != plain:
            return None
        head = full[: len(full) - len(plain)]
        if prefix is not None and head != prefix:
            return None
        prefix = head
    return prefix
