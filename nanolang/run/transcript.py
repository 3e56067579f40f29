"""What an instance's context reads as after (or during) a run: its full text and its chat
messages (``.text()`` and ``.messages()`` of a run's state)."""

from __future__ import annotations

from typing import Any

from nanolang.run.context import Context


def context_text(context: Context, tokenizer: Any) -> str:
    """The whole context as text, chat messages through the model's template."""
    return context.text


def context_messages(context: Context) -> list[dict[str, str]]:
    """The chat messages, in order (plain text outside role blocks is not a message)."""
    return context.messages()


def plain_text(context: Context) -> str:
    """The context's text so far (``var_scope`` and ``concat`` take what a block added)."""
    return context.text
