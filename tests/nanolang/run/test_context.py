"""Token-id contexts and the chat template applied message by message, against
transformers' ``apply_chat_template`` on the test model's real tokenizer."""

from __future__ import annotations

import copy
from typing import Any

import pytest

from nanolang.run.chat import ChatPieces, ChatTemplateError
from nanolang.run.context import Context
from runtime.outputs import RequestMetrics, RequestOutput

LLAMA3 = (
    "{{ bos_token }}{% for m in messages %}<|start_header_id|>{{ m['role'] }}<|end_header_id|>"
    "\n\n{{ m['content'] }}<|eot_id|>{% endfor %}"
    "{% if add_generation_prompt %}<|start_header_id|>assistant<|end_header_id|>\n\n{% endif %}"
)
CHATML = (
    "{% for m in messages %}{% if loop.first and m['role'] != 'system' %}<|im_start|>system\n"
    "You are a helpful assistant.<|im_end|>\n{% endif %}<|im_start|>{{ m['role'] }}\n"
    "{{ m['content'] }}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)
CONVERSATION = [
    ("system", "Be brief."),
    ("user", "What is 2+2?"),
    ("assistant", "It is 4."),
    ("user", "And 3+3?"),
]


def with_template(tokenizer: Any, template: str | None) -> Any:
    if template is None:
        return tokenizer
    other = copy.deepcopy(tokenizer)
    other.chat_template = template
    return other


def template_ids(tok: Any, chat: list[dict[str, str]], **kw: Any) -> list[int]:
    out = tok.apply_chat_template(chat, tokenize=True, **kw)
    return list(out["input_ids"] if hasattr(out, "keys") else out)


def messages_context(tokenizer: Any, turns: list[tuple[str, str]]) -> Context:
    chat, ctx = ChatPieces(tokenizer), Context()
    for role, text in turns:
        ctx.open_role(role, chat)
        ctx.append(text)
        ctx.close_role(chat)
    return ctx


@pytest.mark.parametrize("template", [None, LLAMA3, CHATML], ids=["model", "llama3", "chatml"])
def test_messages_equal_apply_chat_template(tokenizer: Any, template: str | None) -> None:
    tok = with_template(tokenizer, template)
    for n in range(1, len(CONVERSATION) + 1):
        turns = CONVERSATION[:n]
        chat = [{"role": r, "content": c} for r, c in turns]
        ctx = messages_context(tok, turns)
        assert ctx.text == tok.apply_chat_template(chat, tokenize=False)
        assert ctx.freeze(tok) == template_ids(tok, chat)


@pytest.mark.parametrize("template", [None, LLAMA3, CHATML], ids=["model", "llama3", "chatml"])
def test_open_assistant_turn_is_the_generation_prompt(tokenizer: Any, template: str) -> None:
    tok = with_template(tokenizer, template)
    ctx = messages_context(tok, CONVERSATION[:2])
    ctx.open_role("assistant", ChatPieces(tok))
    chat = [{"role": r, "content": c} for r, c in CONVERSATION[:2]]
    assert ctx.freeze(tok) == template_ids(tok, chat, add_generation_prompt=True)


def output(prompt: list[int], ids: list[int], text: str, reason: str = "length", stop=None):
    return RequestOutput(
        "r", None, prompt, text, ids, True, reason, stop, None, None, RequestMetrics(0.0)
    )


def test_generated_tokens_are_kept_exactly_not_retokenised(tokenizer: Any) -> None:
    chat = ChatPieces(tokenizer)
    ctx = messages_context(tokenizer, [("user", "Hi")])
    ctx.open_role("assistant", chat)
    prompt = ctx.freeze(tokenizer)
    # a split that tokenising the text again would merge differently
    word = next(w for w in ("the", "is", "in", "it") if len(tokenizer.encode(w)) == 1)
    generated = [t for ch in word for t in tokenizer.encode(ch, add_special_tokens=False)]
    text = tokenizer.decode(generated, skip_special_tokens=True)
    assert tokenizer.encode(text, add_special_tokens=False) != generated
    ctx.extend_generated(output(prompt, generated, text), tokenizer)
    ctx.close_role(chat)
    ids = ctx.freeze(tokenizer)
    assert ids[: len(prompt) + len(generated)] == prompt + generated
    assert ctx.text.endswith(f"{word}<|end|>\n")


def test_eos_and_cut_stop_strings_stay_out_of_the_context(tokenizer: Any) -> None:
    ctx = Context()
    ctx.append("Q: ")
    prompt = ctx.freeze(tokenizer)
    eos = tokenizer.eos_token_id
    word = tokenizer.encode(" yes", add_special_tokens=False)
    ctx.extend_generated(output(prompt, [*word, eos], " yes", "stop", None), tokenizer)
    assert ctx.freeze(tokenizer) == prompt + word
    stop = tokenizer.encode(" no\nQ", add_special_tokens=False)
    ctx2 = Context()
    ctx2.append("Q: ")
    ctx2.freeze(tokenizer)
    ctx2.extend_generated(output(prompt, stop, " no", "stop", "\nQ"), tokenizer)
    assert ctx2.text == "Q:  no"
    assert tokenizer.decode(ctx2.freeze(tokenizer), skip_special_tokens=True).endswith(" no")


def test_plain_text_gets_bos_and_chat_does_not(tokenizer: Any) -> None:
    plain = Context()
    plain.append("Hello world")
    assert plain.freeze(tokenizer) == tokenizer.encode("Hello world")
    chat = messages_context(tokenizer, [("user", "Q")])
    assert chat.freeze(tokenizer) == tokenizer.encode(chat.text, add_special_tokens=False)
    assert Context().freeze(tokenizer) == [tokenizer.bos_token_id]


def test_text_after_messages_is_plain_and_next_messages_start_a_conversation(
    tokenizer: Any,
) -> None:
    chat = ChatPieces(tokenizer)
    ctx = messages_context(tokenizer, [("user", "Q")])
    ctx.append("raw tail")
    ctx.open_role("user", chat)
    ctx.append("again")
    ctx.close_role(chat)
    assert ctx.text == "<|user|>\nQ<|end|>\nraw tail<|user|>\nagain<|end|>\n"


def test_fork_copies_are_independent_and_share_the_pin(tokenizer: Any) -> None:
    from nanolang.run.context import Pin

    ctx = Context()
    ctx.append("a")
    ctx.pin = Pin(3)
    branches = [ctx.copy(group=7) for _ in range(2)]
    branches[0].append("b")
    assert ctx.text == "a" and branches[0].text == "ab" and branches[1].group == 7
    assert branches[0].move_on() == () and branches[1].move_on() == ()
    assert ctx.move_on() == (3,)  # the last holder releases it


def test_templates_that_rewrite_earlier_messages_are_refused(tokenizer: Any) -> None:
    # renders the first message differently once a second one follows
    odd = "{% for m in messages %}{% if messages|length > 1 and loop.first %}#{% endif %}"
    odd += "{{ m['content'] }}{% endfor %}"
    chat = ChatPieces(with_template(tokenizer, odd))
    chat.header(("user",))
    with pytest.raises(ChatTemplateError, match="message by message"):
        chat.header(("user", "assistant"))
