"""The demo model's training corpus: task conversations rendered with the chat template,
a byte-level BPE tokenizer trained on them, and packed token blocks with loss weights.

Loss weights: tokens the assistant writes (its content and the ``<|end|>`` closing it) weigh
1; prompt tokens weigh ``PROMPT_WEIGHT`` (the model still learns the formats it reads).
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any

import jinja2

from nanolang.demo.tasks import MIX, TASKS, Example, Message
from runtime import tiny
from runtime.tiny import CHAT_TEMPLATE

PROMPT_WEIGHT = 0.1
END = "<|end|>"


@dataclass(frozen=True)
class Document:
    """One rendered conversation and the character spans the assistant wrote."""

    text: str
    answer_spans: tuple[tuple[int, int], ...]


_TEMPLATE = jinja2.Environment().from_string(CHAT_TEMPLATE)


def render(messages: list[Message]) -> str:
    """The chat template's rendering (the same template the saved tokenizer carries)."""
    return _TEMPLATE.render(messages=messages, add_generation_prompt=False)


def document(example: Example) -> Document:
    spans = []
    for i, message in enumerate(example.messages):
        if message["role"] != "assistant":
            continue
        before = render(example.messages[:i])
        head = render([{"role": "assistant", "content": ""}]).split(END)[0]
        start = len(before) + len(head)
        spans.append((start, start + len(message["content"]) + len(END)))
    return Document(render(example.messages), tuple(spans))


def sample_examples(count: int, seed: int) -> list[Example]:
    """``count`` examples drawn from the task mix (deterministic for a seed)."""
    rng = random.Random(seed)
    names = sorted(MIX)
    weights = [MIX[n] for n in names]
    return [TASKS[rng.choices(names, weights)[0]](rng) for _ in range(count)]


def train_tokenizer(texts: list[str], vocab_size: int) -> Any:
    """A byte-level BPE tokenizer trained on ``texts``, with the chat template attached."""
    return tiny.train_tokenizer(texts, vocab_size)


def weighted_ids(doc: Document, tokenizer: Any) -> tuple[list[int], list[float]]:
    """Token ids of ``doc`` and each token's loss weight (as a prediction target)."""
    enc = tokenizer(doc.text, add_special_tokens=False, return_offsets_mapping=True)
    weights = []
    for start, end in enc["offset_mapping"]:
        inside = any(a <= start and end <= b for a, b in doc.answer_spans)
        weights.append(1.0 if inside else PROMPT_WEIGHT)
    return list(enc["input_ids"]), weights


def pack(
    docs: list[Document], tokenizer: Any, block: int
) -> tuple[list[list[int]], list[list[float]]]:
    """Concatenate the documents and cut them into blocks of ``block + 1`` tokens."""
    ids: list[int] = []
    weights: list[float] = []
    for doc in docs:
        doc_ids, doc_weights = weighted_ids(doc, tokenizer)
        ids += doc_ids
        weights += doc_weights
    n = (len(ids) - 1) // block
    blocks = [ids[i * block : i * block + block + 1] for i in range(n)]
    block_weights = [weights[i * block : i * block + block + 1] for i in range(n)]
    return blocks, block_weights
