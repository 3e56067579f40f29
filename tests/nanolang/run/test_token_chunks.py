"""Texts cut at hard boundaries tokenise to the whole text's ids, for the tokenizers where the
cache cuts; the others are never cut."""

from __future__ import annotations

import random
from typing import Any

import pytest

from nanolang.run.token_cache import MIN_CUT_CHARS, TokenCache
from nanolang.run.token_chunks import LLAMA3_PATTERN, cutter, hard_pieces, special_prefix
from runtime.tiny import _CORPUS, SPECIAL_TOKENS, train_tokenizer

WORDS = ["Question", "Answer", "apple", "it's", "we'll", "don't", "I'M", "naïve", "straße",
         "東京", "x", "A", "B", "42", "1234567", "3.14", "a-b", "(c)", "::", "...", "?!",
         "<s>", "<|end|>", "<|user|>", "'", "'s", "$", "é"]  # fmt: skip
GAPS = [" ", "  ", "   ", "\n", "\n\n", " \n", "\n ", "\t", "\r\n", ": ", "\n\n\n", ""]


def _texts(seed: int, n: int) -> list[str]:
    rng = random.Random(seed)
    out = []
    for _ in range(n):
        parts: list[str] = []
        while sum(map(len, parts)) < MIN_CUT_CHARS + rng.randrange(400):
            parts += [rng.choice(WORDS), rng.choice(GAPS)]
        out.append("".join(parts))
    return out


def _llama3_style() -> Any:
    """A byte-level BPE split by the Llama-3 regex that puts BOS before every text."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, processors, trainers
    from transformers import PreTrainedTokenizerFast

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Split(Regex(LLAMA3_PATTERN), behavior="isolated", invert=False),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=False),
    ])  # fmt: skip
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=400, special_tokens=SPECIAL_TOKENS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(), show_progress=False,
    )  # fmt: skip
    tok.train_from_iterator([_CORPUS] * 4, trainer=trainer)
    bos = tok.token_to_id("<s>")
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A $B", special_tokens=[("<s>", bos)]
    )
    return PreTrainedTokenizerFast(tokenizer_object=tok, bos_token="<s>", eos_token="<|end|>")


@pytest.fixture(scope="module", params=["gpt2-regex", "llama3-regex"])
def cut_tokenizer(request: pytest.FixtureRequest) -> Any:
    if request.param == "gpt2-regex":
        return train_tokenizer([_CORPUS] * 4, 400)
    return _llama3_style()


def test_pieces_give_the_whole_texts_ids(cut_tokenizer: Any) -> None:
    assert cutter(cut_tokenizer) is hard_pieces
    cache = TokenCache(cut_tokenizer)
    texts = _texts(0, 300)
    assert sum(len(hard_pieces(t)) > 1 for t in texts) > 250  # the cut is taken
    for special in (False, True):
        for text in texts:
            whole = cut_tokenizer.encode(text, add_special_tokens=special)
            assert list(cache.encode(text, special)) == whole, repr(text)


def test_a_shared_header_is_tokenised_once(cut_tokenizer: Any) -> None:
    seen: list[str] = []
    inner = cut_tokenizer.backend_tokenizer

    class Noting:
        backend_tokenizer = inner

        def encode(self, text: str, add_special_tokens: bool = True) -> list[int]:
            seen.append(text)
            return cut_tokenizer.encode(text, add_special_tokens=add_special_tokens)

    header = "".join(f"Question: {w} apple\nAnswer: A\n\n" for w in WORDS[:30])
    cache = TokenCache(Noting())
    for q in ("seven", "three"):
        text = f"{header}Question: {q} rivers\nAnswer:"
        assert list(cache.encode(text, True)) == cut_tokenizer.encode(text)
    new = [t for t in seen if "rivers" in t]
    assert len(new) == 2 and all(len(t) < 40 for t in new)  # only each instance's own piece


def test_special_prefix_is_the_bos_a_template_puts_first() -> None:
    tok = _llama3_style()
    assert special_prefix(tok) == (tok.bos_token_id,)


def test_other_tokenizers_are_never_cut() -> None:
    from tokenizers import AddedToken, normalizers

    tok = train_tokenizer([_CORPUS] * 4, 400)
    tok.add_tokens([AddedToken("<tool>", rstrip=True)])  # absorbs the whitespace after it
    assert cutter(tok) is None
    plain = train_tokenizer([_CORPUS] * 4, 400)
    plain.backend_tokenizer.normalizer = normalizers.NFKC()
    assert cutter(plain) is None
    assert cutter(object()) is None
    text = "Question: apple\n" * 64
    cache = TokenCache(plain)
    assert list(cache.encode(text)) == plain.encode(text, add_special_tokens=False)
    assert list(cache._ids) == [(text, False)]  # tokenised whole


@pytest.mark.parametrize(
    ("text", "pieces"),
    [
        ("no newline", ["no newline"]),
        ("ab\n\ncd\nEF", ["ab", "\n\ncd", "\nEF"]),
        ("a:\nb1\né\n\n", ["a:\nb1\né\n\n"]),  # after a colon, a digit, a non-ASCII letter
        ("\nx\n", ["\nx", "\n"]),
    ],
)
def test_hard_pieces_cut_after_an_ascii_letter_before_a_newline(
    text: str, pieces: list[str]
) -> None:
    assert hard_pieces(text) == pieces
    assert "".join(hard_pieces(text)) == text
