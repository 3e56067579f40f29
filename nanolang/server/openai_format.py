"""Pieces of OpenAI response bodies shared by completions and chat."""

from __future__ import annotations

import codecs
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from runtime.outputs import RequestOutput

TopK = dict[int, float]


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def finish_reason(output: RequestOutput) -> str | None:
    """OpenAI's reasons: "stop" (EOS, stop token or string, constraint end) or "length"."""
    if not output.finished:
        return None
    return "length" if output.finish_reason == "length" else "stop"


def usage(prompt_tokens: int, outputs: list[RequestOutput], cached: int = 0) -> dict[str, Any]:
    """Usage with ``prompt_tokens_details.cached_tokens``: prompt tokens served from the prefix
    cache (``cached``: the sum over the distinct prompts)."""
    completion = sum(len(o.token_ids) for o in outputs)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
        "prompt_tokens_details": {"cached_tokens": cached},
    }


@dataclass(frozen=True)
class Scored:
    """Tokens with their logprobs and top alternatives (None where the engine has none: the
    first prompt token)."""

    ids: list[int]
    logprobs: list[float | None]
    tops: list[TopK | None] | None  # None when no alternatives were asked for

    def __add__(self, other: Scored) -> Scored:
        tops = None if self.tops is None or other.tops is None else self.tops + other.tops
        return Scored(self.ids + other.ids, self.logprobs + other.logprobs, tops)


def token_string(tokenizer: Any, token: int) -> str:
    return str(tokenizer.decode([token]))


def _is_partial(text: str, raw: bytes) -> bool:
    """Whether a token that decodes alone to ``text`` holds only part of a UTF-8 character
    (it decodes to U+FFFD, and its own bytes ``raw`` are not whole characters)."""
    if "\ufffd" not in text or not raw:
        return False
    try:
        raw.decode("utf-8")  # whole characters: a U+FFFD of the token's own
    except UnicodeDecodeError:
        return True
    return False


def completion_token(
    tokenizer: Any, token: int, token_bytes: Callable[[int], bytes]
) -> tuple[str, bytes]:
    """A completions token's string and the bytes it adds to the text. A token that holds only
    part of a UTF-8 character decodes alone to U+FFFD; OpenAI's legacy completions name such a
    token by its bytes, ``bytes:\\xe2\\x80`` (backslash, x, two hex digits per byte), and so
    does this server."""
    text = token_string(tokenizer, token)
    raw = token_bytes(token) if "\ufffd" in text else b""
    if not raw:
        return text, text.encode()
    if _is_partial(text, raw):
        return "bytes:" + "".join(f"\\x{b:02x}" for b in raw), raw
    return text, raw


def chat_token(
    tokenizer: Any, token: int, token_bytes: Callable[[int], bytes]
) -> tuple[str, bytes]:
    """A chat token's ``token`` string and its ``bytes`` (the token's own). OpenAI's chat
    completions write a token's bytes that are only part of a character as ``\\xNN`` escapes
    (``"\\xeb\\x8b"`` with ``bytes`` ``[235, 139]``; no ``bytes:`` prefix there), whole
    characters as text, and so does this server: distinct partial tokens stay distinct (they
    all decoded to U+FFFD), and a client rebuilds the text from ``bytes`` as OpenAI says."""
    text = token_string(tokenizer, token)
    raw = token_bytes(token) or text.encode()
    if _is_partial(text, raw):
        return raw.decode("utf-8", errors="backslashreplace"), raw
    return text, raw


class TextOffsets:
    """Completions' ``text_offset``: where each token starts in the text, in characters of the
    text its bytes spell. A token that continues a character begun by the token before it
    starts where that character does."""

    def __init__(self) -> None:
        self.chars = 0
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def advance(self, raw: bytes) -> int:
        """The offset of the token with bytes ``raw``, the tokens before it counted."""
        start = self.chars
        self.chars += len(self._decoder.decode(raw))
        return start


def _top_strings(
    tokenizer: Any, top: TopK | None, token_bytes: Callable[[int], bytes]
) -> dict[str, float] | None:
    if top is None:
        return None
    out: dict[str, float] = {}
    for token, lp in top.items():
        text = completion_token(tokenizer, token, token_bytes)[0]
        out[text] = max(lp, out.get(text, float("-inf")))  # distinct ids may decode alike
    return out


def completion_logprobs(
    tokenizer: Any,
    scored: Scored,
    offsets: TextOffsets,
    token_bytes: Callable[[int], bytes],
) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object (``top_logprobs``: token string -> logprob;
    a token of part of a character is named by its bytes: ``completion_token``)."""
    tokens, starts = [], []
    for t in scored.ids:
        text, raw = completion_token(tokenizer, t, token_bytes)
        tokens.append(text)
        starts.append(offsets.advance(raw))
    tops = scored.tops or [None] * len(tokens)
    return {
        "tokens": tokens,
        "token_logprobs": list(scored.logprobs),
        "top_logprobs": (
            [_top_strings(tokenizer, t, token_bytes) for t in tops] if scored.tops else None
        ),
        "text_offset": starts,
    }


def _entry(
    tokenizer: Any, token: int, logprob: float | None, token_bytes: Callable[[int], bytes]
) -> dict[str, Any]:
    """``bytes``: the token's own (a client joins them to rebuild a character that spans
    tokens); ``token``: its text, partial characters as escapes (``chat_token``)."""
    text, raw = chat_token(tokenizer, token, token_bytes)
    return {"token": text, "logprob": logprob, "bytes": list(raw)}


def chat_logprobs(
    tokenizer: Any, scored: Scored, token_bytes: Callable[[int], bytes]
) -> dict[str, Any]:
    """The chat ``logprobs`` object: one entry per token with its ``top_logprobs`` list."""
    tops = scored.tops or [None] * len(scored.ids)
    content = []
    for token, lp, top in zip(scored.ids, scored.logprobs, tops, strict=True):
        alternatives = sorted((top or {}).items(), key=lambda kv: -kv[1])
        content.append(
            {
                **_entry(tokenizer, token, lp, token_bytes),
                "top_logprobs": [_entry(tokenizer, t, v, token_bytes) for t, v in alternatives],
            }
        )
    return {"content": content}
