"""A stand-in tokenizer for servers whose tokenizer the client cannot have.

Token ids are Unicode code points, so ``decode(encode(text)) == text`` exactly, and the "chat
template" marks each message with control characters, so a rendered context parses back into
plain text and messages (``parse``). The OpenAI backend sends those texts and messages, never
these ids, to the remote server."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

START, SEP, END = "\x02", "\x03", "\x04"


@dataclass(frozen=True)
class Turn:
    role: str
    content: str
    open: bool


class TextCodec:
    """``encode`` / ``decode`` / ``apply_chat_template``, as the language uses them."""

    bos_token_id = None
    eos_token_id = None
    chat_template = "nanolang text codec"

    def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return [ord(ch) for ch in text]

    def decode(self, ids: list[int], skip_special_tokens: bool = False) -> str:
        return "".join(chr(i) for i in ids)

    def apply_chat_template(
        self, messages: list[dict[str, Any]], tokenize: bool = False, **_: Any
    ) -> str:
        text = "".join(f"{START}{m['role']}{SEP}{m['content']}{END}" for m in messages)
        return self.encode(text) if tokenize else text  # type: ignore[return-value]


def parse(text: str) -> tuple[str, list[Turn]]:
    """Plain text outside messages (joined) and the messages, in order.

    A message whose end marker is missing is the open one (the prompt was cut inside it)."""
    plain: list[str] = []
    turns: list[Turn] = []
    rest = text
    while rest:
        start = rest.find(START)
        if start < 0:
            plain.append(rest)
            break
        plain.append(rest[:start])
        role, _, body = rest[start + 1 :].partition(SEP)
        content, closed, rest = body.partition(END)
        turns.append(Turn(role, content, open=not closed))
    return "".join(plain), turns
