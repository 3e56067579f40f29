"""Rendering contexts through the model's chat template, including open role blocks."""

from __future__ import annotations

from typing import Any

from nanolang.run.context import Context, encode, render


def test_plain_text_renders_verbatim(tokenizer: Any) -> None:
    ctx = Context()
    ctx.append("Hello ")
    ctx.append("world")
    assert render(ctx, tokenizer) == "Hello world"


def test_closed_messages_render_like_the_template(tokenizer: Any) -> None:
    ctx = Context()
    for role, text in (("system", "Be brief."), ("user", "Hi")):
        ctx.open_role(role)
        ctx.append(text)
        ctx.close_role()
    chat = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert render(ctx, tokenizer) == tokenizer.apply_chat_template(chat, tokenize=False)


def test_open_assistant_turn_is_cut_at_its_content(tokenizer: Any) -> None:
    ctx = Context()
    ctx.open_role("user")
    ctx.append("Rate it.")
    ctx.close_role()
    ctx.open_role("assistant")
    ctx.append("Score: ")
    full = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Rate it."}, {"role": "assistant", "content": "Score: "}],
        tokenize=False,
    )
    rendered = render(ctx, tokenizer)
    assert full.startswith(rendered)
    assert rendered.endswith("<|assistant|>\nScore: ")
    assert not rendered.endswith("<|end|>\n")


def test_empty_open_assistant_equals_generation_prompt(tokenizer: Any) -> None:
    ctx = Context()
    ctx.open_role("user")
    ctx.append("Q")
    ctx.close_role()
    ctx.open_role("assistant")
    expected = tokenizer.apply_chat_template(
        [{"role": "user", "content": "Q"}], tokenize=False, add_generation_prompt=True
    )
    assert render(ctx, tokenizer) == expected


def test_text_after_messages_is_plain(tokenizer: Any) -> None:
    ctx = Context()
    ctx.open_role("user")
    ctx.append("Q")
    ctx.close_role()
    ctx.append("raw tail")
    assert render(ctx, tokenizer).endswith("<|end|>\nraw tail")


def test_copy_is_independent(tokenizer: Any) -> None:
    ctx = Context()
    ctx.open_role("assistant")
    ctx.append("a")
    branch = ctx.copy()
    branch.append("b")
    assert render(ctx, tokenizer).endswith("a")
    assert render(branch, tokenizer).endswith("ab")


def test_encode_adds_no_special_tokens_to_chat(tokenizer: Any) -> None:
    ctx = Context()
    ctx.open_role("user")
    ctx.append("Q")
    ids = encode(ctx, tokenizer)
    assert ids == tokenizer.encode(render(ctx, tokenizer), add_special_tokens=False)
