"""A program instance's context (plain text and chat messages) and how it renders to a prompt.

Role blocks become chat messages rendered by the model's own chat template. While a role block
is open (text or a ``gen`` inside ``assistant { ... }``), the open message is rendered with a
sentinel appended to its content and the rendered prompt is cut at the sentinel: the prompt
then ends exactly where the open turn's content ends, without the template's end-of-turn
marker. Text outside role blocks is plain completion text, inserted verbatim between rendered
runs of messages.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from nanolang.syntax.errors import NanoRuntimeError

SENTINEL = "\u0001nanolang-cut\u0001"


@dataclass
class Message:
    role: str
    content: str
    open: bool = True


@dataclass
class Context:
    """Mutable, copied at fork: a list of plain-text strings and messages."""

    segments: list[str | Message] = field(default_factory=list)

    def copy(self) -> Context:
        return Context(
            [s if isinstance(s, str) else Message(s.role, s.content, s.open) for s in self.segments]
        )

    @property
    def open_message(self) -> Message | None:
        last = self.segments[-1] if self.segments else None
        return last if isinstance(last, Message) and last.open else None

    def append(self, text: str) -> None:
        message = self.open_message
        if message is not None:
            message.content += text
        elif self.segments and isinstance(self.segments[-1], str):
            self.segments[-1] += text
        else:
            self.segments.append(text)

    def open_role(self, role: str) -> None:
        self.segments.append(Message(role, ""))

    def close_role(self) -> None:
        message = self.open_message
        if message is not None:
            message.open = False

    @property
    def has_messages(self) -> bool:
        return any(isinstance(s, Message) for s in self.segments)


def render(context: Context, tokenizer: Any) -> str:
    """The prompt text of ``context`` (chat runs through ``tokenizer.apply_chat_template``)."""
    out: list[str] = []
    run: list[Message] = []
    for segment in context.segments:
        if isinstance(segment, Message):
            run.append(segment)
            continue
        if run:
            out.append(render_messages(run, tokenizer))
            run = []
        out.append(segment)
    if run:
        out.append(render_messages(run, tokenizer))
    return "".join(out)


def render_messages(messages: list[Message], tokenizer: Any) -> str:
    """One chat-template rendering; an open last message is cut where its content ends."""
    is_open = messages[-1].open
    chat = [{"role": m.role, "content": m.content} for m in messages]
    if is_open:
        chat[-1]["content"] += SENTINEL
    text = tokenizer.apply_chat_template(chat, tokenize=False, add_generation_prompt=False)
    if not is_open:
        return text
    if text.count(SENTINEL) != 1:
        raise NanoRuntimeError(
            "the model's chat template does not render message content verbatim; "
            "cannot continue an open role block"
        )
    return text[: text.index(SENTINEL)]


def encode(context: Context, tokenizer: Any) -> list[int]:
    """Token ids of the rendered prompt. Chat templates carry their own special tokens, so they
    are not added again; plain-completion contexts get the tokenizer's defaults (e.g. BOS).
    An empty context is the BOS token alone (generation from nothing)."""
    text = render(context, tokenizer)
    ids = list(tokenizer.encode(text, add_special_tokens=not context.has_messages))
    if not ids and getattr(tokenizer, "bos_token_id", None) is not None:
        ids = [tokenizer.bos_token_id]
    return ids
