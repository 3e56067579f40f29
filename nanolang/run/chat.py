"""The model's chat template, applied one message at a time.

A conversation's rendering is cut into pieces around its messages' contents by rendering the
same roles with sentinel contents: ``P0 S1 P1 S2 ... Sk Pk``. Message i's header is what comes
between its predecessor's footer and its content; its footer is what follows its content when it
is the last message. ``header(roles)`` and ``footer(roles)`` give the pieces for the last of
``roles``, so a context appends header, content, footer per message and ends up equal to the
template's rendering of the whole conversation. Templates that render an earlier message
differently once later ones follow cannot be applied incrementally; they get a clear error.
Pieces depend only on the roles, so they are computed once per role sequence and cached.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from nanolang.syntax.errors import NanoRuntimeError

SENTINEL = "\u0001nanolang-content-{}\u0001"


class ChatTemplateError(NanoRuntimeError):
    """The model's chat template cannot be applied message by message."""


class ChatPieces:
    """Headers and footers of messages under ``tokenizer``'s chat template."""

    def __init__(self, tokenizer: Any) -> None:
        self.tokenizer = tokenizer
        self._pieces = lru_cache(maxsize=4096)(self._split)

    def header(self, roles: tuple[str, ...]) -> str:
        """The text that opens the last of ``roles`` (after the footer of the one before)."""
        pieces = self._pieces(roles)
        previous = self._pieces(roles[:-1])[-1] if len(roles) > 1 else ""
        between = pieces[-2]
        if not between.startswith(previous):
            raise ChatTemplateError(
                "the model's chat template ends a message differently once another follows "
                f"(roles {list(roles)}); it cannot be applied message by message"
            )
        return between[len(previous) :]

    def footer(self, roles: tuple[str, ...]) -> str:
        """The text that closes the last of ``roles`` when it is the last message so far."""
        return self._pieces(roles)[-1]

    def _split(self, roles: tuple[str, ...]) -> tuple[str, ...]:
        """``(P0, ..., Pk)``: the rendering of ``roles`` with sentinel contents, cut at them."""
        if not roles:
            return ("",)
        chat = [{"role": r, "content": SENTINEL.format(i)} for i, r in enumerate(roles)]
        try:
            text = self.tokenizer.apply_chat_template(
                chat, tokenize=False, add_generation_prompt=False
            )
        except Exception as exc:
            raise ChatTemplateError(f"the model's chat template failed: {exc}") from exc
        pieces = []
        for i in range(len(roles)):
            before, found, text = text.partition(SENTINEL.format(i))
            if not found or SENTINEL.format(i) in text:
                raise ChatTemplateError(
                    "the model's chat template does not render message content verbatim; "
                    "role blocks need one that does"
                )
            pieces.append(before)
        pieces.append(text)
        self._check_prefix(roles, tuple(pieces))
        return tuple(pieces)

    def _check_prefix(self, roles: tuple[str, ...], pieces: tuple[str, ...]) -> None:
        """Earlier messages must render as they did without the last one."""
        if len(roles) > 1 and pieces[:-2] != self._pieces(roles[:-1])[:-1]:
            raise ChatTemplateError(
                "the model's chat template renders earlier messages differently once later "
                f"ones follow (roles {list(roles)}); it cannot be applied message by message"
            )
