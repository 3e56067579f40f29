"""A program instance's context, kept as the exact token ids the model sees.

The context never re-tokenises what it already holds. Text appended by the program collects in
``pending`` and is tokenised once, as one piece, when the next request freezes the context
(``freeze``); generated tokens are appended exactly as the model produced them. So a request
always extends its parent's token sequence, which is what lets the runtime keep and reuse the
parent's KV blocks, and the model is conditioned on its own tokens, not on a re-tokenisation.

Role blocks go through the model's chat template incrementally (``chat.ChatPieces``): opening
a role appends the template's header for that message, closing it the template's footer, so a
context of messages equals ``apply_chat_template`` of those messages, while a ``gen`` inside an
open role ends the prompt exactly where the open turn's content ends. Text outside role blocks
is plain completion text; messages after such text start a new conversation for the template.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from nanolang.run.chat import ChatPieces

if TYPE_CHECKING:
    from nanolang.run.token_cache import TokenCache
    from runtime.outputs import RequestOutput

MAX_TRIM_STEPS = 64  # output tokens looked at from the end when a stop string was cut off


@dataclass
class Pin:
    """The runtime keeps node ``node``'s KV blocks pinned; ``holders`` contexts may still extend
    them (fork branches share their parent's pin). The last holder's next request unpins it."""

    node: int
    holders: int = 1


@dataclass
class Context:
    """Mutable; ``copy`` at a fork. ``ids`` are frozen tokens, ``pending`` text not yet tokenised.

    ``text`` is the same context as text (for records and traces). ``roles`` are the roles of
    the current conversation's messages, the last one open while ``open`` is True. ``node`` is
    the id of the request whose tokens ``ids`` extend (None before the first request).
    """

    ids: list[int] = field(default_factory=list)
    pending: str = ""
    text: str = ""
    roles: list[str] = field(default_factory=list)
    open: bool = False
    plain_start: bool | None = None  # whether the context began with plain text (gets BOS)
    node: int | None = None
    pin: Pin | None = None
    group: int | None = None  # the fork group this branch's first request joins
    turns: list[tuple[str, int, int | None]] = field(default_factory=list)  # role, text span

    def copy(self, group: int | None = None) -> Context:
        """A fork branch: same tokens, sharing the pin; its first request joins ``group``."""
        if self.pin is not None:
            self.pin.holders += 1
        return Context(
            list(self.ids),
            self.pending,
            self.text,
            list(self.roles),
            self.open,
            self.plain_start,
            self.node,
            self.pin,
            group,
            list(self.turns),
        )

    def move_on(self) -> tuple[int, ...]:
        """This context stops extending its pinned node (a new request, or its end): the nodes
        to unpin now (none while other holders remain)."""
        pin, self.pin = self.pin, None
        if pin is None:
            return ()
        pin.holders -= 1
        return (pin.node,) if pin.holders == 0 else ()

    def _add(self, text: str) -> None:
        self.pending += text
        self.text += text

    def append(self, text: str) -> None:
        """Program text: inside an open role it is the message's content, else plain text."""
        if not text:
            return
        if not self.open and self.roles:
            self.roles = []  # plain text ends the conversation: later messages start a new one
        if self.plain_start is None:
            self.plain_start = not self.open
        self._add(text)

    def open_role(self, role: str, chat: ChatPieces) -> None:
        if self.plain_start is None:
            self.plain_start = False
        self.roles.append(role)
        self.open = True
        self._add(chat.header(tuple(self.roles)))
        self.turns.append((role, len(self.text), None))

    def close_role(self, chat: ChatPieces) -> None:
        if self.open:
            self.open = False
            role, start, _ = self.turns[-1]
            self.turns[-1] = (role, start, len(self.text))
            self._add(chat.footer(tuple(self.roles)))

    def messages(self) -> list[dict[str, str]]:
        """The chat messages so far (role and content), an open one up to now."""
        return [{"role": r, "content": self.text[a:b]} for r, a, b in self.turns]

    @property
    def num_tokens(self) -> int:
        return len(self.ids)

    def freeze(self, tokenizer: Any, cache: TokenCache | None = None) -> list[int]:
        """Tokenise the pending text (once) and return the whole context's token ids
        (``cache``: the ``TokenCache`` of ``tokenizer`` to take the pending text's ids from)."""
        if self.pending:
            first = not self.ids
            add_special = bool(first and self.plain_start)
            encode = cache.encode if cache is not None else tokenizer.encode
            self.ids.extend(encode(self.pending, add_special_tokens=add_special))
            self.pending = ""
        if not self.ids and getattr(tokenizer, "bos_token_id", None) is not None:
            self.ids.append(tokenizer.bos_token_id)  # generation from nothing starts at BOS
        return list(self.ids)

    def extend_generated(self, output: RequestOutput, tokenizer: Any) -> None:
        """Append a finished request's output as the tokens the model produced (less a cut
        stop string or stop token, which the output's text does not contain either)."""
        kept, rest = generated_tokens(output, tokenizer)
        self.ids.extend(kept)
        self.text += output.text
        self.pending += rest

    def extend_tokens(self, ids: list[int], text: str) -> None:
        """Append known tokens (a chosen ``select`` choice, exactly as it was scored)."""
        self.ids.extend(ids)
        self._add(text)
        self.pending = ""


def generated_tokens(output: RequestOutput, tokenizer: Any) -> tuple[list[int], str]:
    """The longest prefix of ``output.token_ids`` whose text starts ``output.text``, and the
    text left over (non-empty only when a stop string cut a token in the middle)."""
    ids, text = list(output.token_ids), output.text
    context = list(output.prompt_token_ids[-6:])
    if ids and output.finish_reason == "stop" and isinstance(output.stop_reason, int | None):
        special = set(getattr(tokenizer, "all_special_ids", ()) or ())
        if ids[-1] == output.stop_reason or ids[-1] in special:
            ids.pop()  # the EOS or stop token: not part of the text, and not of the context

    def decoded(n: int) -> str:
        head = tokenizer.decode(context, skip_special_tokens=True) if context else ""
        return tokenizer.decode(context + ids[:n], skip_special_tokens=True)[len(head) :]

    if not hasattr(tokenizer, "decode"):
        return [], text
    for n in range(len(ids), max(-1, len(ids) - MAX_TRIM_STEPS - 1), -1):
        prefix = decoded(n)
        if text.startswith(prefix):
            return ids[:n], text[len(prefix) :]
    return [], text
