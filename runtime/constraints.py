"""Regex, JSON-schema and Lark-grammar constraints as token masks, through llguidance.

A constraint is compiled once per distinct spec into an ``LLMatcher`` (cached); each request walks
its own ``deep_copy`` of it. Compilation is bounded: a size check before anything is built, a
wall-clock limit, and llguidance's own parser limits, so one bad constraint costs its request a
clear error and nothing else. ``prepare`` compiles off the caller's thread (the server calls it
before queueing a request, so the engine thread only ever finds compiled constraints in the cache);
``constraint_error`` applies the same limits without a tokenizer (for ``nanolang check``).
"""

from __future__ import annotations

import json
import re
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass
from typing import Any

import llguidance
import numpy as np
import torch

from runtime.sampling_params import ConstraintError

MAXREPEAT = 4294967295  # re's unbounded-repeat marker (``re._constants.MAXREPEAT``)


class ConstraintLimitError(ConstraintError):
    """A constraint over the compile limits (size or time)."""


@dataclass(frozen=True)
class ConstraintLimits:
    """Bounds on compiling one constraint.

    ``max_chars``: length of the regex / schema / grammar text. ``max_regex_size``: states a regex
    may expand to, counting each counted repetition ``{m,n}`` as n copies of its body (nested
    repetitions multiply: ``(c{1,400}){1,400}`` is 160,000). ``compile_seconds``: wall clock
    for building the matcher. ``parser``: llguidance's per-token work limits (lexer fuel, states).
    """

    max_chars: int = 256 * 1024
    max_regex_size: int = 20_000
    compile_seconds: float = 5.0
    cache_size: int = 256

    def parser_limits(self) -> llguidance.LLParserLimits:
        return llguidance.LLParserLimits()


DEFAULT_LIMITS = ConstraintLimits()


@dataclass(frozen=True)
class ConstraintSpec:
    """One constraint: ``kind`` is "regex", "json_schema" (JSON text) or "grammar" (Lark)."""

    kind: str
    text: str

    @staticmethod
    def of(
        regex: str | None = None, json_schema: str | None = None, grammar: str | None = None
    ) -> ConstraintSpec | None:
        given = [(k, v) for k, v in (("regex", regex), ("json_schema", json_schema),
                                      ("grammar", grammar)) if v is not None]  # fmt: skip
        if len(given) > 1:
            raise ConstraintError("give at most one of regex, json_schema and grammar")
        return ConstraintSpec(*given[0]) if given else None


def regex_size(pattern: str) -> int:
    """How many states ``pattern`` expands to, counting ``{m,n}`` as n copies (see limits)."""
    try:
        parsed = re._parser.parse(pattern)  # type: ignore[attr-defined]
    except re.error as exc:
        raise ConstraintError(f"invalid regex {pattern!r}: {exc}") from exc
    return _size(parsed)


def _size(items: Any) -> int:
    total = 0
    for op, arg in items:
        name = str(op)
        if name in ("MAX_REPEAT", "MIN_REPEAT", "POSSESSIVE_REPEAT"):
            low, high, body = arg
            total += max(1, low if high == MAXREPEAT else high) * _size(body)
        elif name == "SUBPATTERN":
            total += _size(arg[-1])
        elif name == "BRANCH":
            total += sum(_size(b) for b in arg[1])
        elif name in ("ATOMIC_GROUP",):
            total += _size(arg)
        elif name in ("ASSERT", "ASSERT_NOT"):
            total += _size(arg[1])
        else:
            total += 1
    return total


def schema_patterns(node: Any) -> Iterator[str]:
    """Every ``pattern`` string inside a JSON schema (they become regexes)."""
    if isinstance(node, dict):
        for key, value in node.items():
            if key == "pattern" and isinstance(value, str):
                yield value
            else:
                yield from schema_patterns(value)
    elif isinstance(node, list):
        for item in node:
            yield from schema_patterns(item)


def _check_regex(pattern: str, limits: ConstraintLimits, where: str) -> None:
    size = regex_size(pattern)
    if size > limits.max_regex_size:
        raise ConstraintLimitError(
            f"{where} {pattern[:80]!r} is too large: its repetitions expand to {size} states "
            f"(limit {limits.max_regex_size})"
        )


def grammar_text(spec: ConstraintSpec, limits: ConstraintLimits = DEFAULT_LIMITS) -> str:
    """llguidance's grammar for ``spec`` after the size checks (raises ConstraintError)."""
    if len(spec.text) > limits.max_chars:
        raise ConstraintLimitError(
            f"the {spec.kind} has {len(spec.text)} characters (limit {limits.max_chars})"
        )
    if spec.kind == "regex":
        _check_regex(spec.text, limits, "regex")
        return _llg(llguidance.LLMatcher.grammar_from_regex, spec.text)
    if spec.kind == "grammar":
        return _llg(llguidance.LLMatcher.grammar_from_lark, spec.text)
    try:
        schema = json.loads(spec.text)
    except json.JSONDecodeError as exc:
        raise ConstraintError(f"the JSON schema is not valid JSON: {exc}") from exc
    if not isinstance(schema, dict | bool):
        raise ConstraintError("a JSON schema must be a JSON object")
    for pattern in schema_patterns(schema):
        _check_regex(pattern, limits, "the schema's pattern")
    return _llg(
        llguidance.LLMatcher.grammar_from_json_schema,
        json.dumps(closed_objects(schema)),
        defaults={"whitespace_pattern": "[ ]?"},  # an optional space, as outlines allowed
    )


def closed_objects(node: Any) -> Any:
    """The schema with ``additionalProperties: false`` on every object that lists properties
    and says nothing about others (strict structured outputs: only the named keys)."""
    if isinstance(node, list):
        return [closed_objects(item) for item in node]
    if not isinstance(node, dict):
        return node
    out = {k: closed_objects(v) for k, v in node.items()}
    if "properties" in out and "additionalProperties" not in out:
        out["additionalProperties"] = False
    return out


def _llg(make: Any, text: str, **kwargs: Any) -> str:
    try:
        return str(make(text, **kwargs))
    except (ValueError, TypeError, RuntimeError) as exc:
        raise ConstraintError(f"invalid constraint: {exc}") from exc


def _bounded(work: Any, seconds: float, what: str) -> Any:
    """``work()`` on a daemon thread, waited for at most ``seconds`` (llguidance releases the
    GIL while compiling, so the waiting thread and everyone else keep running)."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="constraint-compile", daemon=True).start()
    try:
        return future.result(timeout=seconds)
    except FutureTimeout:
        raise ConstraintLimitError(
            f"compiling the {what} took over {seconds:g} s (the limit); simplify it"
        ) from None


def constraint_error(
    regex: str | None = None,
    json_schema: str | None = None,
    grammar: str | None = None,
    limits: ConstraintLimits = DEFAULT_LIMITS,
) -> str | None:
    """Why a constraint cannot be used (None when it can), under the server's limits but
    without a tokenizer. For static checkers such as ``nanolang check``."""
    try:
        spec = ConstraintSpec.of(regex, json_schema, grammar)
        if spec is None:
            return None
        text = grammar_text(spec, limits)
        problem = _bounded(
            lambda: llguidance.LLMatcher.validate_grammar(
                text, None, limits=limits.parser_limits()
            ),
            limits.compile_seconds,
            spec.kind,
        )
    except ConstraintError as exc:
        return str(exc)
    return f"invalid {spec.kind}: {problem.strip()}" if problem else None


class ConstraintCompiler:
    """Compiles constraints against one tokenizer, caching each compiled matcher (thread-safe:
    the server prepares on worker threads, the engine thread reads the cache)."""

    def __init__(
        self,
        tokenizer: Any,
        eos_token_id: int,
        vocab_size: int,
        limits: ConstraintLimits = DEFAULT_LIMITS,
    ) -> None:
        self.vocab_size = max(vocab_size, len(tokenizer))
        self.model_vocab_size = vocab_size
        self.eos_token_id = eos_token_id
        self.limits = limits
        from llguidance.hf import from_tokenizer

        self.lltok = from_tokenizer(tokenizer, n_vocab=self.vocab_size, eos_token=eos_token_id)
        self._cache: OrderedDict[ConstraintSpec, llguidance.LLMatcher | ConstraintError] = (
            OrderedDict()
        )
        self._lock = threading.Lock()

    def _cached(self, spec: ConstraintSpec) -> llguidance.LLMatcher | ConstraintError | None:
        with self._lock:
            found = self._cache.get(spec)
            if found is not None:
                self._cache.move_to_end(spec)
            return found

    def _store(self, spec: ConstraintSpec, value: llguidance.LLMatcher | ConstraintError) -> None:
        with self._lock:
            self._cache[spec] = value
            while len(self._cache) > self.limits.cache_size:
                self._cache.popitem(last=False)

    def _build(self, spec: ConstraintSpec) -> llguidance.LLMatcher:
        text = grammar_text(spec, self.limits)
        matcher = llguidance.LLMatcher(self.lltok, text, limits=self.limits.parser_limits())
        if matcher.is_error():
            raise ConstraintError(f"invalid {spec.kind}: {matcher.get_error().strip()}")
        return matcher

    def prepare(self, spec: ConstraintSpec) -> None:
        """Compile ``spec`` into the cache within the limits; raises ConstraintError (also for a
        spec that failed before: failures are cached too, so a repeat costs nothing)."""
        found = self._cached(spec)
        if found is None:
            try:
                found = _bounded(lambda: self._build(spec), self.limits.compile_seconds, spec.kind)
            except ConstraintError as exc:
                found = exc
            self._store(spec, found)
        if isinstance(found, ConstraintError):
            raise found

    def compile(
        self, regex: str | None, json_schema: str | None, grammar: str | None = None
    ) -> TokenConstraint:
        """A fresh walker for the constraint (compiled now, within the limits, if not cached)."""
        spec = ConstraintSpec.of(regex, json_schema, grammar)
        if spec is None:
            raise ConstraintError("no constraint given")
        self.prepare(spec)
        matcher = self._cached(spec)
        if not isinstance(matcher, llguidance.LLMatcher):  # evicted meanwhile: build it here
            matcher = self._build(spec)
        return TokenConstraint(matcher.deep_copy(), self.model_vocab_size, self.eos_token_id)


class TokenConstraint:
    """One request's position in a compiled constraint.

    ``error`` is set when the matcher hit one of llguidance's per-token limits mid-output; then
    only EOS is allowed and the engine ends the request with that error."""

    def __init__(self, matcher: llguidance.LLMatcher, vocab_size: int, eos_token_id: int) -> None:
        self.matcher, self.vocab_size, self.eos_token_id = matcher, vocab_size, eos_token_id
        self.error: str | None = None

    def allowed_mask(self) -> torch.Tensor:
        """[vocab_size] bool: the tokens that keep the output a prefix of a match."""
        packed = np.frombuffer(self.matcher.compute_bitmask(), dtype=np.uint8)
        bits = np.unpackbits(packed, count=self.vocab_size, bitorder="little")  # bit i = token i
        mask = torch.from_numpy(bits.view(np.bool_))
        if self.matcher.is_error() or not bits.any():
            self.error = self.error or self.matcher.get_error().strip() or "no token is allowed"
            mask = torch.zeros(self.vocab_size, dtype=torch.bool)
            mask[self.eos_token_id] = True
        return mask

    def advance(self, token_id: int) -> None:
        if token_id == self.eos_token_id or self.error is not None:
            return
        if not self.matcher.consume_token(token_id):
            self.error = self.matcher.get_error().strip() or f"token {token_id} was refused"

    def only_eos_allowed(self) -> bool:
        return self.matcher.is_stopped()
