"""Pieces of OpenAI response bodies shared by completions and chat."""

from __future__ import annotations

import time
import uuid
from typing import Any

from runtime.outputs import RequestOutput


def new_id(prefix: str) -> str:
    return f"{prefix}-{uuid.uuid4().hex}"


def now() -> int:
    return int(time.time())


def finish_reason(output: RequestOutput) -> str | None:
    """OpenAI's reasons: "stop" (EOS, stop token or string, constraint end) or "length"."""
    if not output.finished:
        return None
    return "length" if output.finish_reason == "length" else "stop"


def usage(prompt_tokens: int, outputs: list[RequestOutput]) -> dict[str, int]:
    completion = sum(len(o.token_ids) for o in outputs)
    return {
        "prompt_tokens": prompt_tokens,
        "completion_tokens": completion,
        "total_tokens": prompt_tokens + completion,
    }


def token_strings(tokenizer: Any, ids: list[int]) -> list[str]:
    return [tokenizer.decode([t]) for t in ids]


def completion_logprobs(
    tokenizer: Any, ids: list[int], logprobs: list[float] | None, offset: int = 0
) -> dict[str, Any] | None:
    """The legacy completions ``logprobs`` object (sampled tokens only: no top alternatives)."""
    if logprobs is None:
        return None
    tokens = token_strings(tokenizer, ids)
    offsets = []
    for token in tokens:
        offsets.append(offset)
        offset += len(token)
    return {
        "tokens": tokens,
        "token_logprobs": list(logprobs),
        "top_logprobs": None,
        "text_offset": offsets,
    }


def chat_logprobs(
    tokenizer: Any, ids: list[int], logprobs: list[float] | None
) -> dict[str, Any] | None:
    """The chat ``logprobs`` object: one entry per sampled token, no top alternatives."""
    if logprobs is None:
        return None
    content = [
        {"token": tok, "logprob": lp, "bytes": list(tok.encode()), "top_logprobs": []}
        for tok, lp in zip(token_strings(tokenizer, ids), logprobs, strict=True)
    ]
    return {"content": content}
