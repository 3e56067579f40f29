"""Tokens that hold only part of a UTF-8 character (the tiny model's byte-level tokenizer spells
"é" and "€" one byte per token): the streamed text never carries U+FFFD (a character is sent
once its last byte came). In legacy completions' ``logprobs`` such a token is named by its
bytes as OpenAI does there (``bytes:\\xc3``), with ``text_offset`` pointing at its character;
in chat's, as OpenAI's chat API does, its ``token`` is the bytes as escapes (``\\xc3``) and
``bytes`` are its own, for the chosen tokens and their ``top_logprobs`` alike."""

from __future__ import annotations

import re

import openai
from openai.types.chat import ChatCompletionTokenLogprob

from tests.nanolang.server.conftest import MODEL

TEXT = "é€ ok"
BYTE_TOKEN = re.compile(r"bytes:((?:\\x[0-9a-f]{2})+)")


def token_bytes(token: str) -> bytes:
    """The bytes a completions token stands for (its text, or the bytes it names)."""
    match = BYTE_TOKEN.fullmatch(token)
    if match is None:
        return token.encode()
    return bytes(int(h, 16) for h in match.group(1).split("\\x")[1:])


def check_tokens(text: str, tokens: list[str], offsets: list[int]) -> None:
    assert all("\ufffd" not in t for t in tokens), tokens
    assert any(BYTE_TOKEN.fullmatch(t) for t in tokens), tokens  # the case under test occurs
    assert b"".join(token_bytes(t) for t in tokens) == text.encode()
    spelled = b""
    for token, offset in zip(tokens, offsets, strict=True):
        # each token starts at the character its first byte belongs to
        assert offset == len(spelled.decode("utf-8", errors="ignore")), (tokens, offsets)
        spelled += token_bytes(token)


def test_partial_characters_in_completions_text_and_logprobs(client: openai.OpenAI) -> None:
    kw = dict(model=MODEL, prompt="x", max_tokens=12, temperature=0, logprobs=2)
    body = {"regex": re.escape(TEXT)}
    whole = client.completions.create(**kw, extra_body=body).choices[0]
    assert whole.text == TEXT and whole.logprobs is not None
    tokens, offsets = whole.logprobs.tokens or [], whole.logprobs.text_offset or []
    check_tokens(TEXT, tokens, offsets)
    for top in whole.logprobs.top_logprobs or []:
        assert all("\ufffd" not in t for t in top)
    pieces: list[str] = []
    streamed_tokens: list[str] = []
    streamed_offsets: list[int] = []
    for chunk in client.completions.create(**kw, extra_body=body, stream=True):
        choice = chunk.choices[0]
        pieces.append(choice.text)
        if choice.logprobs is not None:
            streamed_tokens += choice.logprobs.tokens or []
            streamed_offsets += choice.logprobs.text_offset or []
    assert all("\ufffd" not in piece for piece in pieces), pieces
    assert "".join(pieces) == TEXT
    assert (streamed_tokens, streamed_offsets) == (tokens, offsets)


def test_echoed_prompt_tokens_name_their_bytes(client: openai.OpenAI) -> None:
    prompt = "naïve café"
    out = client.completions.create(
        model=MODEL, prompt=prompt, max_tokens=0, echo=True, logprobs=0
    ).choices[0]
    assert out.text == prompt and out.logprobs is not None
    check_tokens(prompt, out.logprobs.tokens or [], out.logprobs.text_offset or [])


CHAT_ESCAPES = re.compile(r"(?:\\x[0-9a-f]{2})+")


def check_chat_entry(entry: ChatCompletionTokenLogprob | object) -> None:
    """A chat logprobs entry: its ``token`` is its ``bytes`` as text, partial characters as
    ``\\xNN`` escapes (never U+FFFD)."""
    token, raw = entry.token, bytes(entry.bytes or [])  # type: ignore[attr-defined]
    assert "\ufffd" not in token, token
    assert raw.decode("utf-8", errors="backslashreplace") == token, (token, raw)


def test_partial_characters_in_chat_logprobs(client: openai.OpenAI) -> None:
    kw = dict(
        model=MODEL,
        messages=[{"role": "user", "content": "x"}],
        max_tokens=12,
        temperature=0,
        logprobs=True,
        top_logprobs=3,
        extra_body={"regex": re.escape(TEXT)},
    )
    whole = client.chat.completions.create(**kw).choices[0]  # type: ignore[call-overload]
    assert whole.message.content == TEXT and whole.logprobs is not None
    content = whole.logprobs.content or []
    assert any(CHAT_ESCAPES.fullmatch(e.token) for e in content)  # the case under test occurs
    assert b"".join(bytes(e.bytes or []) for e in content) == TEXT.encode()
    for entry in content:
        check_chat_entry(entry)
        assert entry.top_logprobs
        for alternative in entry.top_logprobs:
            check_chat_entry(alternative)
    pieces: list[str] = []
    streamed: list[ChatCompletionTokenLogprob] = []
    for chunk in client.chat.completions.create(**kw, stream=True):  # type: ignore[call-overload]
        if not chunk.choices:
            continue
        choice = chunk.choices[0]
        pieces.append(choice.delta.content or "")
        if choice.logprobs is not None:
            streamed += choice.logprobs.content or []
    assert all("\ufffd" not in piece for piece in pieces), pieces
    assert "".join(pieces) == TEXT
    assert [e.model_dump() for e in streamed] == [e.model_dump() for e in content]
