"""The six benchmark programs and each instance's arguments.

Generation lengths are fixed (``ignore_eos``), so every mode does the same work; ``scale``
shrinks every length for small runs (the CPU and tests), ``gen_scale`` (when given) the
generation lengths alone, prompts keeping their size (a GPU run within a short device lease).
Text is drawn from a fixed word list, seeded by the instance index, and sized in tokens of the
model's own tokenizer.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FEW_SHOT = """
program main(header, question, choices) {
    "{header}Question: {question}\\nAnswer:"
    select answer from choices
    return answer
}
"""

SELF_CONSISTENCY = """
program main(question, n, cot, answer_len) {
    "Question: {question}\\nLet us think step by step."
    fork n {
        gen steps(max_tokens = cot, ignore_eos = true, temperature = 0.7)
        "\\nThe answer is"
        gen answer(max_tokens = answer_len, ignore_eos = true, temperature = 0)
    }
    return answer
}
"""

TREE_OF_THOUGHT = """
program main(question, width, think, score_len) {
    "Problem: {question}\\n"
    fork width {
        "Idea:" gen idea(max_tokens = think, ignore_eos = true, temperature = 0.7)
        fork width {
            "\\nStep:" gen step(max_tokens = think, ignore_eos = true, temperature = 0.7)
            "\\nScore:" gen score(max_tokens = score_len, ignore_eos = true, temperature = 0)
        }
    }
    return score
}
"""

CHAT = """
program main(turns, reply) {
    system "You are a helpful assistant."
    for turn in turns {
        user "{turn}"
        assistant { gen answer(max_tokens = reply, ignore_eos = true, temperature = 0.7) }
    }
    return answer
}
"""

REACT = """
program main(question, steps, think, act) {
    "Question: {question}\\n"
    for step in steps {
        "Thought {step}:" gen thought(max_tokens = think, ignore_eos = true, temperature = 0.7)
        "\\nAction {step}:" gen action(max_tokens = act, ignore_eos = true, temperature = 0)
        "\\nObservation {step}: the tool returned result number {step}.\\n"
    }
    return action
}
"""

JUDGE = """
program main(question, answer_len, verdict_len) {
    "Question: {question}\\n"
    fork 2 {
        "Answer:" gen answer(max_tokens = answer_len, ignore_eos = true, temperature = 0.7)
    }
    "\\nAnswer A:{answer[0]}\\nAnswer B:{answer[1]}\\nWhich answer is better? Verdict:"
    gen verdict(max_tokens = verdict_len, ignore_eos = true, temperature = 0)
    return verdict
}
"""

WORDS = [
    "the",
    "a",
    "of",
    "river",
    "stone",
    "apple",
    "number",
    "seven",
    "green",
    "quick",
    "market",
    "letter",
    "garden",
    "paper",
    "train",
    "cloud",
    "silver",
    "window",
    "table",
    "orange",
    "music",
    "winter",
    "summer",
    "bridge",
    "forest",
    "doctor",
    "yellow",
    "planet",
    "little",
    "market",
    "answer",
    "question",
    "three",
    "twelve",
    "count",
    "total",
    "more",
    "less",
    "each",
    "many",
    "blue",
    "red",
]


def sized_text(rng: random.Random, tokens: int, tokenizer: Any) -> str:
    """Words until the text is about ``tokens`` tokens long (at least one word)."""
    words = [rng.choice(WORDS)]
    while len(tokenizer.encode(" ".join(words), add_special_tokens=False)) < tokens:
        words.extend(rng.choice(WORDS) for _ in range(4))
    return " ".join(words)


def _n(value: float, scale: float) -> int:
    return max(1, round(value * scale))


@dataclass(frozen=True)
class BenchProgram:
    name: str
    source: str
    make_args: Callable[[int, float, float, Any], dict[str, Any]]  # (i, scale, gen, tokenizer)

    def args(
        self, i: int, scale: float, tokenizer: Any, gen_scale: float | None = None
    ) -> dict[str, Any]:
        """Instance ``i``'s arguments: prompt lengths times ``scale``, generation lengths times
        ``gen_scale`` (``scale`` when None)."""
        return self.make_args(i, scale, scale if gen_scale is None else gen_scale, tokenizer)


_HEADERS: dict[tuple[int, float], str] = {}


def few_shot_header(scale: float, tok: Any) -> str:
    """The 5-shot header every instance shares (made once per tokenizer and scale)."""
    key = (id(tok), scale)
    if key not in _HEADERS:
        shots = random.Random(0)
        shot = "Question: {}\nAnswer: {}\n\n"
        _HEADERS[key] = "".join(
            shot.format(sized_text(shots, _n(180, scale), tok), shots.choice("ABCD"))
            for _ in range(5)
        )
    return _HEADERS[key]


def _few_shot(i: int, scale: float, gen: float, tok: Any) -> dict[str, Any]:
    rng = random.Random(i)
    return {"header": few_shot_header(scale, tok), "question": sized_text(rng, _n(60, scale), tok),
            "choices": [" A", " B", " C", " D"]}  # fmt: skip


def _self_consistency(i: int, scale: float, gen: float, tok: Any) -> dict[str, Any]:
    rng = random.Random(i)
    return {"question": sized_text(rng, _n(80, scale), tok), "n": 8,
            "cot": _n(256, gen), "answer_len": _n(8, gen)}  # fmt: skip


def _tree_of_thought(i: int, scale: float, gen: float, tok: Any) -> dict[str, Any]:
    rng = random.Random(i)
    return {"question": sized_text(rng, _n(80, scale), tok), "width": 3,
            "think": _n(64, gen), "score_len": _n(4, gen)}  # fmt: skip


def _chat(i: int, scale: float, gen: float, tok: Any) -> dict[str, Any]:
    rng = random.Random(i)
    turns = [sized_text(rng, _n(40, scale), tok) for _ in range(5)]
    return {"turns": turns, "reply": _n(96, gen)}


def _react(i: int, scale: float, gen: float, tok: Any) -> dict[str, Any]:
    rng = random.Random(i)
    return {"question": sized_text(rng, _n(80, scale), tok), "steps": [1, 2, 3, 4, 5],
            "think": _n(48, gen), "act": _n(16, gen)}  # fmt: skip


def _judge(i: int, scale: float, gen: float, tok: Any) -> dict[str, Any]:
    rng = random.Random(i)
    return {"question": sized_text(rng, _n(80, scale), tok),
            "answer_len": _n(128, gen), "verdict_len": _n(8, gen)}  # fmt: skip


PROGRAMS = {
    p.name: p
    for p in (
        BenchProgram("few_shot", FEW_SHOT, _few_shot),  # gen_scale: select scores, never samples
        BenchProgram("self_consistency", SELF_CONSISTENCY, _self_consistency),
        BenchProgram("tree_of_thought", TREE_OF_THOUGHT, _tree_of_thought),
        BenchProgram("chat", CHAT, _chat),
        BenchProgram("react", REACT, _react),
        BenchProgram("judge", JUDGE, _judge),
    )
}
