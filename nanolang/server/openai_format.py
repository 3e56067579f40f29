"""Pieces of OpenAI response bodies shared by completions and chat."""

from __future__ import annotations

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


def _top_strings(tokenizer: Any, top: TopK | None) -> dict[str, float] | None:
    if top is None:
        return None
    out: dict[str, float] = {}
    for token, lp in top.items():
        text = token_string(tokenizer, token)
        out[text] = max(lp, out.get(text, float("-inf")))  # distinct ids may decode alike
    return out


def completion_logprobs(tokenizer: Any, scored: Scored, offset: int = 0) -> dict[str, Any]:
    """The legacy completions ``logprobs`` object (``top_logprobs``: token text -> logprob)."""
    tokens = [token_string(tokenizer, t) for t in scored.ids]
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    tops = scored.tops or [None] * len(tokens)
    return {
        "tokens": tokens,
        "token_logprobs": list(scored.logprobs),
        "top_logprobs": [_top_strings(tokenizer, t) for t in tops] if scored.tops else None,
        "text_offset": offsets,
    }


def _entry(
    tokenizer: Any, token: int, logprob: float | None, token_bytes: Callable[[int], bytes]
) -> dict[str, Any]:
    """``bytes``: the token's own (a token holding part of a character decodes alone to
    U+FFFD, whose bytes are not its own; a client joins the bytes to rebuild the character)."""
    text = token_string(tokenizer, token)
    raw = token_bytes(token) or text.encode()
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
