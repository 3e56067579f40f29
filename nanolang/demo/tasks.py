"""Synthetic tasks: each draws one example as a chat conversation (for training) and as the
arguments and expected answer of the program in ``programs/`` that solves it (for datasets).

The system prompts and turn formats here are the ones the .nano programs write, so the model
sees at training time exactly the prompts the programs render.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from nanolang.demo.facts import (
    CAPITALS,
    ITEMS,
    NAMES,
    NEGATIVE_PHRASES,
    POSITIVE_PHRASES,
    REVIEW_OPENERS,
    REVIEW_TOPICS,
)

MC_SYSTEM = "Answer with the letter of the correct option."
GEO_SYSTEM = "You are a geography assistant."
MATH_SYSTEM = "Solve the problem step by step."
STEPWISE_SYSTEM = "Solve the problem one step at a time."
NEXT_STEP = "Next step."
JUDGE_SYSTEM = "You are a strict judge. Reply yes or no."
EXTRACT_SYSTEM = "Extract the person as JSON."
TOTAL_SYSTEM = "Keep a running total."
REACT_SYSTEM = "Use lookup[name] to find facts and finish[answer] to answer."
SENTIMENT_SYSTEM = "You are a precise sentiment classifier."
LETTERS = "ABCD"

Message = dict[str, str]


@dataclass(frozen=True)
class Example:
    """One conversation (the answer included) and the matching program call."""

    task: str
    messages: list[Message]
    args: dict[str, Any] = field(default_factory=dict)
    expected: Any = None


def _msg(role: str, content: str) -> Message:
    return {"role": role, "content": content}


def mc_question(country: str, options: list[str]) -> str:
    lines = [f"{LETTERS[i]}. {o}" for i, o in enumerate(options)]
    return f"What is the capital of {country}?\n" + "\n".join(lines)


def _mc_turns(rng: random.Random) -> tuple[list[Message], dict[str, Any], str]:
    country = rng.choice(sorted(CAPITALS))
    others = [c for c in CAPITALS.values() if c != CAPITALS[country]]
    options = [*rng.sample(sorted(others), 3), CAPITALS[country]]
    rng.shuffle(options)
    letter = LETTERS[options.index(CAPITALS[country])]
    turns = [
        _msg("user", mc_question(country, options)),
        _msg("assistant", f"{CAPITALS[country]} ({letter})"),
    ]
    return turns, {"country": country, "options": options}, letter


def multiple_choice(rng: random.Random) -> Example:
    messages = [_msg("system", MC_SYSTEM)]
    for _ in range(rng.randint(0, 2)):
        messages += _mc_turns(rng)[0]
    turns, args, letter = _mc_turns(rng)
    return Example("mmlu", messages + turns, args, letter)


def capital_chat(rng: random.Random) -> Example:
    messages = [_msg("system", GEO_SYSTEM)]
    for country in rng.sample(sorted(CAPITALS), rng.randint(1, 3)):
        messages.append(_msg("user", f"What is the capital of {country}?"))
        messages.append(_msg("assistant", f"The capital of {country} is {CAPITALS[country]}."))
    return Example("capitals", messages)


def _problem(rng: random.Random) -> tuple[str, list[str], int]:
    """A two-step word problem, its two reasoning steps and its answer."""
    name, item = rng.choice(NAMES), rng.choice(ITEMS)
    a, b = rng.randint(2, 20), rng.randint(1, 20)
    c = rng.randint(1, a + b)
    question = (
        f"{name} has {a} {item}. {name} gets {b} more and gives away {c}. "
        f"How many {item} does {name} have now?"
    )
    return question, [f"{a} + {b} = {a + b}.", f"{a + b} - {c} = {a + b - c}."], a + b - c


def word_problem(rng: random.Random) -> Example:
    question, steps, result = _problem(rng)
    answer = f"{steps[0]} {steps[1]} The answer is {result}."
    messages = [_msg("system", MATH_SYSTEM), _msg("user", question), _msg("assistant", answer)]
    return Example("gsm8k", messages, {"question": question}, result)


def stepwise_problem(rng: random.Random) -> Example:
    """The same problems one step per turn (what the tree-of-thought program expands)."""
    question, steps, result = _problem(rng)
    messages = [
        _msg("system", STEPWISE_SYSTEM),
        _msg("user", question),
        _msg("assistant", steps[0]),
        _msg("user", NEXT_STEP),
        _msg("assistant", f"{steps[1]} The answer is {result}."),
    ]
    return Example("tree_of_thought", messages, {"question": question}, result)


def judge_question(rng: random.Random) -> tuple[str, str, str]:
    """(question, proposed answer, "yes" | "no"), half of them correct."""
    correct = rng.random() < 0.5
    if rng.random() < 0.5:
        country = rng.choice(sorted(CAPITALS))
        truth = CAPITALS[country]
        wrong = rng.choice(sorted(c for c in CAPITALS.values() if c != truth))
        question, proposed = f"What is the capital of {country}?", truth if correct else wrong
    else:
        a, b = rng.randint(1, 20), rng.randint(1, 20)
        offset = rng.choice([-3, -2, -1, 1, 2, 3])
        question, proposed = f"What is {a} + {b}?", str(a + b if correct else a + b + offset)
    return question, proposed, "yes" if correct else "no"


def judge(rng: random.Random) -> Example:
    question, proposed, verdict = judge_question(rng)
    prompt = f"Question: {question}\nProposed answer: {proposed}\nIs the proposed answer correct?"
    messages = [_msg("system", JUDGE_SYSTEM), _msg("user", prompt), _msg("assistant", verdict)]
    return Example("judge", messages, {"question": question, "answer": proposed}, verdict)


SENTENCES = (
    "{name} is {age} years old and lives in {city}.",
    "Meet {name}, a {age}-year-old from {city}.",
    "{city} is home to {name}, who is {age}.",
    "At {age}, {name} moved to {city}.",
)


def extraction(rng: random.Random) -> Example:
    record = {
        "name": rng.choice(NAMES),
        "age": rng.randint(18, 90),
        "city": rng.choice(sorted(CAPITALS.values())),
    }
    text = rng.choice(SENTENCES).format(**record)
    answer = f'{{"name": "{record["name"]}", "age": {record["age"]}, "city": "{record["city"]}"}}'
    messages = [
        _msg("system", EXTRACT_SYSTEM),
        _msg("user", f"Text: {text}"),
        _msg("assistant", answer),
    ]
    return Example("extract", messages, {"text": text}, record)


def running_total(rng: random.Random) -> Example:
    total = rng.randint(1, 20)
    steps, totals = [f"Start with {total}."], [total]
    for _ in range(rng.randint(1, 3)):
        if rng.random() < 0.5 or total < 2:
            k = rng.randint(1, 10)
            steps.append(f"Add {k}.")
            total += k
        else:
            k = rng.randint(1, total - 1)
            steps.append(f"Subtract {k}.")
            total -= k
        totals.append(total)
    messages = [_msg("system", TOTAL_SYSTEM)]
    for step, value in zip(steps, totals, strict=True):
        messages += [_msg("user", step), _msg("assistant", f"Now we have {value}.")]
    return Example("chat", messages, {"steps": steps}, totals)


def react(rng: random.Random) -> Example:
    people = rng.sample(NAMES, 3)
    countries = rng.sample(sorted(CAPITALS), 3)
    directory = {p: f"{p} lives in {c}." for p, c in zip(people, countries, strict=True)}
    person, country = people[0], countries[0]
    question = f"What is the capital of the country where {person} lives?"
    messages = [
        _msg("system", REACT_SYSTEM),
        _msg("user", f"Question: {question}"),
        _msg(
            "assistant", f"Thought: I need to find where {person} lives.\nAction: lookup[{person}]"
        ),
        _msg("user", f"Observation: {directory[person]}"),
        _msg(
            "assistant",
            f"Thought: The capital of {country} is {CAPITALS[country]}.\n"
            f"Action: finish[{CAPITALS[country]}]",
        ),
    ]
    args = {"question": question, "directory": directory}
    return Example("react", messages, args, CAPITALS[country])


def sentiment(rng: random.Random) -> Example:
    label = rng.choice(["positive", "negative"])
    phrases = POSITIVE_PHRASES if label == "positive" else NEGATIVE_PHRASES
    topic = rng.choice(REVIEW_TOPICS)
    opener = rng.choice(REVIEW_OPENERS).format(topic=topic)
    first, second = rng.sample(phrases, 2)
    review = f"{opener} {first.capitalize()}, {second}."
    prompt = f"Review: {review}\nIs this review positive or negative?"
    messages = [_msg("system", SENTIMENT_SYSTEM), _msg("user", prompt), _msg("assistant", label)]
    return Example("classify", messages, {"review": review}, label)


TASKS: dict[str, Callable[[random.Random], Example]] = {
    "mmlu": multiple_choice,
    "capitals": capital_chat,
    "gsm8k": word_problem,
    "tree_of_thought": stepwise_problem,
    "judge": judge,
    "extract": extraction,
    "chat": running_total,
    "react": react,
    "classify": sentiment,
}

# share of each task in the training corpus (arithmetic and multiple choice are the hardest)
MIX: dict[str, float] = {
    "mmlu": 0.2,
    "capitals": 0.06,
    "gsm8k": 0.16,
    "tree_of_thought": 0.1,
    "judge": 0.1,
    "extract": 0.1,
    "chat": 0.12,
    "react": 0.1,
    "classify": 0.08,
}
