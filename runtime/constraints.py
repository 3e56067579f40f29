"""Regex, JSON-schema and Lark-grammar constraints as token masks, through llguidance.

A constraint is compiled once per distinct spec into an ``LLMatcher`` (cached); each request walks
its own ``deep_copy`` of it. Compilation is bounded: a size check before anything is built, a
wall-clock limit, and llguidance's own parser limits, so one bad constraint costs its request a
clear error and nothing else. ``prepare`` compiles off the caller's thread (the server calls it
before queueing a request, so the engine thread only ever finds compiled constraints in the cache);
``constraint_error`` applies the same limits without a tokenizer (for ``nanolang check``). The
matcher a regex walker is fitted to its budget with (``Fitting``) is built on a worker thread too,
within the same time limit, while its request waits and the others go on.
"""

from __future__ import annotations

import json
import re
import threading
import time
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


# the code points of 1-, 2-, 3- and 4-byte UTF-8 characters
_UTF8_CLASSES = (r"[\x00-\x7F]", r"[\u0080-\u07FF]", r"[\u0800-\uFFFF]", r"[\U00010000-\U0010FFFF]")
FIT_TOKENS = 64  # a regex gen is fitted when this many tokens (or half its budget) remain


def fit_budget(pattern: str, prefix: str, max_bytes: int) -> str:
    """A Lark grammar for the matches of ``pattern`` that start with ``prefix`` and add at most
    ``max_bytes`` UTF-8 bytes after it (``Bk``: at most k bytes; llguidance shares them)."""
    lines = [
        "start: FIT",
        f"FIT: /{_lark_regex_body(pattern)}/ & (/{_literal(prefix)}/ B{max_bytes})",
        'B0: ""',
    ]
    for k in range(1, max_bytes + 1):
        steps = [f"/{cls}/ B{k - n}" for n, cls in enumerate(_UTF8_CLASSES, 1) if n <= k]
        lines.append(f"B{k}: {' | '.join(steps)} | \"\"")
    return "\n".join(lines) + "\n"


def _literal(text: str) -> str:
    """``text`` as a regex matching exactly it, inside a Lark ``/.../`` literal."""
    out = []
    for char in text:
        if char in "\\.+*?()|[]{}^$#&-~/":
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{{{ord(char):X}}}")
        else:
            out.append(char)
    return "".join(out)


def _lark_regex_body(pattern: str) -> str:
    """``pattern`` written inside a Lark ``/.../`` literal: unescaped slashes and raw line
    breaks escaped, everything else (escapes included) as it was."""
    out, i = [], 0
    while i < len(pattern):
        char = pattern[i]
        if char == "\\" and i + 1 < len(pattern):
            out.append(pattern[i : i + 2])
            i += 2
            continue
        out.append({"/": "\\/", "\n": "\\n", "\r": "\\r"}.get(char, char))
        i += 1
    return "".join(out)


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
    """llguidance's grammar for ``spec`` after the size checks (raises ConstraintError; one
    nested past Python's recursion limit, e.g. a regex of 500 nested groups, is over the
    limits too)."""
    try:
        return _grammar_text(spec, limits)
    except RecursionError:
        raise ConstraintLimitError(
            f"the {spec.kind} nests too deeply to be checked (groups or schemas within each "
            "other); flatten it"
        ) from None


def _grammar_text(spec: ConstraintSpec, limits: ConstraintLimits) -> str:
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


def _in_background(work: Any) -> Future[Any]:
    """``work()`` started on a daemon thread (llguidance releases the GIL while compiling, so
    the caller and everyone else keep running); its result or exception in the future."""
    future: Future[Any] = Future()

    def run() -> None:
        try:
            future.set_result(work())
        except BaseException as exc:
            future.set_exception(exc)

    threading.Thread(target=run, name="constraint-compile", daemon=True).start()
    return future


def _bounded(work: Any, seconds: float, what: str) -> Any:
    """``work()`` on a daemon thread, waited for at most ``seconds``."""
    future = _in_background(work)
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
        self,
        regex: str | None,
        json_schema: str | None,
        grammar: str | None = None,
        max_tokens: int | None = None,
    ) -> TokenConstraint:
        """A fresh walker for the constraint (compiled now, within the limits, if not cached).
        With ``max_tokens`` a regex walker is fitted to that budget near its end (``Fitting``)."""
        spec = ConstraintSpec.of(regex, json_schema, grammar)
        if spec is None:
            raise ConstraintError("no constraint given")
        self.prepare(spec)
        matcher = self._cached(spec)
        if not isinstance(matcher, llguidance.LLMatcher):  # evicted meanwhile: build it here
            matcher = self._build(spec)
        fitting = None
        if regex is not None and max_tokens is not None and fit_point(max_tokens) > 0:
            fitting = Fitting(self, regex, max_tokens)
        return TokenConstraint(
            matcher.deep_copy(), self.model_vocab_size, self.eos_token_id, fitting
        )

    def fitted(self, regex: str, tokens: list[int], max_bytes: int) -> llguidance.LLMatcher | None:
        """A matcher for the matches of ``regex`` that extend the text of ``tokens`` by at
        most ``max_bytes`` bytes, already past ``tokens``; None when there is none (or the text
        ends inside a character, or the grammar is over the limits)."""
        try:
            prefix = self.lltok.decode_bytes(tokens).decode("utf-8")
        except UnicodeDecodeError:
            return None
        try:
            grammar = fit_budget(regex, prefix, max_bytes)
            text = _llg(llguidance.LLMatcher.grammar_from_lark, grammar)
            matcher = llguidance.LLMatcher(self.lltok, text, limits=self.limits.parser_limits())
        except ConstraintError:
            return None
        if matcher.is_error() or not matcher.consume_tokens(tokens) or matcher.is_error():
            return None
        return None if _nothing_allowed(matcher, self.eos_token_id) else matcher


def fit_point(max_tokens: int) -> int:
    """How many tokens remain when a regex gen of budget ``max_tokens`` is fitted."""
    return min(FIT_TOKENS, max_tokens // 2)


class Fitting:
    """Fits one regex walker to its token budget: when ``fit_point`` tokens remain and the
    output is still open, the walker switches to the matches that close within that many
    *bytes* (a token is at least one byte and, in byte-level vocabularies, every byte is a
    token, so such a match can always be finished in time). Earlier tokens are not restricted;
    when no match closes within the bytes left, the walker goes on unfitted.

    The fitted matcher is built on a worker thread (``start``, right after the token that makes
    the fit due), never on the engine thread: the grammar is the regex intersected with a byte
    budget, and a costly regex must stall only its own request. Until the build is done, or its
    ``compile_seconds`` are over, ``ready`` is False and the scheduler leaves the request out of
    its batches; a build that fails or runs over the limit is no fit (the walker goes on
    unfitted, and tries again after its next token, up to four builds)."""

    def __init__(self, compiler: ConstraintCompiler, regex: str, max_tokens: int) -> None:
        self.compiler, self.regex, self.max_tokens = compiler, regex, max_tokens
        self.tokens: list[int] = []
        self.tries = 0
        self._build: Future[llguidance.LLMatcher | None] | None = None
        self._deadline = 0.0  # time.monotonic() by which the build must be done

    def due(self) -> bool:
        remaining = self.max_tokens - len(self.tokens)
        return 0 < remaining <= fit_point(self.max_tokens) and self.tries < 4

    @property
    def building(self) -> bool:
        """Whether a build was started and not yet taken."""
        return self._build is not None

    def start(self) -> None:
        """Build the fitted matcher for the tokens so far on a worker thread (replacing a
        build nobody took, as the same try: its tokens are out of date)."""
        if self._build is None:
            self.tries += 1
        tokens, remaining = list(self.tokens), self.max_tokens - len(self.tokens)
        self._deadline = time.monotonic() + self.compiler.limits.compile_seconds
        self._build = _in_background(lambda: self.compiler.fitted(self.regex, tokens, remaining))

    def ready(self) -> bool:
        """False while a build runs within its time limit (its request waits for it)."""
        build = self._build
        return build is None or build.done() or time.monotonic() >= self._deadline

    def take(self) -> llguidance.LLMatcher | None:
        """The started build's matcher (waiting for it within its time limit); None when it
        found no fit, failed, or ran over the limit (it is then left to finish unheeded)."""
        build, self._build = self._build, None
        if build is None:
            return None
        try:
            return build.result(timeout=max(0.0, self._deadline - time.monotonic()))
        except FutureTimeout:
            return None
        except Exception:  # an llguidance failure is no fit, as a grammar over the limits is
            return None


def _nothing_allowed(matcher: llguidance.LLMatcher, eos_token_id: int) -> bool:
    """True when the constraint's language is empty: no token but EOS may start the output,
    and the empty output is no match either."""
    if matcher.is_accepting():
        return False
    bits = np.unpackbits(
        np.frombuffer(matcher.deep_copy().compute_bitmask(), dtype=np.uint8), bitorder="little"
    )
    bits[eos_token_id] = 0
    return not bits.any()


class TokenConstraint:
    """One request's position in a compiled constraint.

    ``error`` is set when the matcher hit one of llguidance's per-token limits mid-output; then
    only EOS is allowed and the engine ends the request with that error. ``fitting`` (regexes
    with a budget) swaps the matcher for a fitted one near the end of the budget."""

    def __init__(
        self,
        matcher: llguidance.LLMatcher,
        vocab_size: int,
        eos_token_id: int,
        fitting: Fitting | None = None,
    ) -> None:
        self.matcher, self.vocab_size, self.eos_token_id = matcher, vocab_size, eos_token_id
        self.error: str | None = None
        self.fitting = fitting

    def ready(self) -> bool:
        """False while the fitted matcher for the next token is being built (``Fitting``)."""
        return self.fitting is None or self.fitting.ready()

    def allowed_mask(self) -> torch.Tensor:
        """[vocab_size] bool: the tokens that keep the output a prefix of a match."""
        if self.fitting is not None and self.fitting.building:
            fitted = self.fitting.take()
            if fitted is not None:
                self.matcher, self.fitting = fitted, None
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
        if self.fitting is not None:
            self.fitting.tokens.append(token_id)
        if not self.matcher.consume_token(token_id):
            self.error = self.matcher.get_error().strip() or f"token {token_id} was refused"
            return
        fitting = self.fitting
        if fitting is not None and fitting.due() and not self.matcher.is_stopped():
            fitting.start()  # for the next token's mask, off this thread

    def only_eos_allowed(self) -> bool:
        return self.matcher.is_stopped()
