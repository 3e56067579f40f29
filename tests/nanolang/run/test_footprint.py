"""KV footprint estimates before a run: loops (for over known lists and range, while), gen n,
select, fork concat and capture; counted with a tokenizer of one token per character."""

from __future__ import annotations

from typing import Any

import pytest

from nanolang.run.footprint import footprint
from nanolang.run.token_cache import TokenCache
from nanolang.syntax.parser import parse


class CharTokenizer:
    """One token per character (no chat template: roles add nothing)."""

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        return [ord(c) for c in text]


def peak(body: str, **args: Any) -> int:
    params = ", ".join(args)
    module = parse(f"program p({params}) {{ {body} }}")
    return footprint(module, module.programs[0], args, CharTokenizer()).tokens


@pytest.mark.parametrize(
    ("body", "args", "expected"),
    [
        # a while loop's body counts (once: only a break, on generated values, ends it)
        ("while true { gen a(max_tokens = 10) break }", {}, 10),
        ("while false { gen a(max_tokens = 10) }", {}, 0),
        # range and list arguments are known before the run: every iteration extends the context
        ("for i in range(1, 5) { gen t(max_tokens = 10) }", {}, 40),
        ("for i in range(3) { \"ab\" gen t(max_tokens = 1) }", {}, 9),
        ('for q in qs { "{q}" gen r(max_tokens = 5) }', {"qs": ["ab", "cde"]}, 15),
        ("for k in keys(r) { gen v(max_tokens = 2) }", {"r": {"a": 1, "b": 2, "c": 3}}, 6),
        # a list computed from generated text: one iteration
        ('gen xs(max_tokens = 3) for x in split(xs, " ") { gen y(max_tokens = 4) }', {}, 7),
        # n samples are held at once and append nothing
        ('"abcd" gen g(n = 3, max_tokens = 10) "xy"', {}, 34),
        # a prefill-only gen holds one probe token and appends nothing
        ('"ab" gen g(max_tokens = 0, top_logprobs_num = 2) "c"', {}, 3),
        # every choice is scored at once; the longest is appended
        ('"ab" select c from ["xyz", "pq"]', {}, 7),
        # concat appends every branch's text after the join
        ('fork 3 concat { "ab" gen x(max_tokens = 5) } gen y(max_tokens = 10)', {}, 31),
        ('fork 3 { "ab" gen x(max_tokens = 5) } gen y(max_tokens = 10)', {}, 21),
        # a fork's (or loop's) variable is afterwards the list of all branches' texts
        ('fork 2 { gen a(max_tokens = 5) } "{a}"', {}, 10),
        ('for i in range(3) { gen a(max_tokens = 2) } "{a}"', {}, 12),
        # a capture is its body, and its variable that text
        ('capture c { "abc" gen g(max_tokens = 4) } "{c}"', {}, 14),
    ],
)
def test_footprint(body: str, args: dict[str, Any], expected: int) -> None:
    assert peak(body, **args) == expected


class CountingTokenizer(CharTokenizer):
    def __init__(self) -> None:
        self.texts: list[str] = []

    def encode(self, text: str, add_special_tokens: bool = False) -> list[int]:
        self.texts.append(text)
        return super().encode(text, add_special_tokens)


def test_a_shared_cache_tokenises_each_text_once_across_instances() -> None:
    module = parse('program p(header, q) { "{header}Q: {q}\\n" gen a(max_tokens = 3) }')
    tokenizer = CountingTokenizer()
    cache = TokenCache(tokenizer)
    header = "a shared few-shot header " * 20
    peaks = [
        footprint(module, module.programs[0], {"header": header, "q": q}, tokenizer, cache)
        for q in ("one", "two", "one")
    ]
    expected = [len(header) + len(f"Q: {q}\n") + 3 for q in ("one", "two", "one")]
    assert [p.tokens for p in peaks] == expected
    assert tokenizer.texts.count(header) == 1 and tokenizer.texts.count("one") == 1
    fresh = footprint(module, module.programs[0], {"header": header, "q": "two"}, CharTokenizer())
    assert fresh.tokens == peaks[1].tokens
