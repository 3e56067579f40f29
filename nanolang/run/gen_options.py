"""``gen`` arguments beyond the sampling parameters: ``n`` samples, ``dtype`` shorthands and
logprob metadata (SGLang's ``return_logprob`` / ``top_logprobs_num``), and building the
request's ``SamplingParams`` from the rest."""

from __future__ import annotations

import dataclasses
import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from nanolang.check.genargs import DTYPE_REGEX
from nanolang.syntax.errors import NanoRuntimeError, Span

if TYPE_CHECKING:
    from runtime.outputs import RequestOutput
    from runtime.sampling_params import SamplingParams


@dataclass(frozen=True)
class GenOptions:
    n: int = 1
    dtype: str | None = None
    return_logprob: bool = False
    top_logprobs_num: int = 0


def split(kwargs: dict[str, Any], span: Span) -> tuple[dict[str, Any], GenOptions]:
    """The sampling arguments, and the options the interpreter handles itself."""
    rest = dict(kwargs)
    options = GenOptions(
        n=rest.pop("n", 1),
        dtype=rest.pop("dtype", None),
        return_logprob=rest.pop("return_logprob", False),
        top_logprobs_num=rest.pop("top_logprobs_num", 0),
    )
    rest.pop("return_text_in_logprobs", None)  # SGLang's; the text is always there
    if options.dtype is not None:
        if "regex" in rest or "json_schema" in rest:
            raise NanoRuntimeError("give dtype or a regex/json_schema, not both", span)
        rest["regex"] = DTYPE_REGEX[options.dtype]
    if options.return_logprob or options.top_logprobs_num:
        rest["logprobs"] = True
    return rest, options


def sampling_params(kwargs: dict[str, Any], options: GenOptions, span: Span) -> SamplingParams:
    """``SamplingParams`` for ``kwargs``; a field this runtime lacks is a clear error."""
    from runtime.sampling_params import SamplingParams

    known = _fields(SamplingParams)
    if options.top_logprobs_num:
        if "top_logprobs" not in known:
            raise NanoRuntimeError("this runtime cannot return top-k logprobs", span)
        kwargs = {**kwargs, "top_logprobs": options.top_logprobs_num}
    missing = [k for k in kwargs if k not in known]
    if missing:
        raise NanoRuntimeError(
            f"this runtime does not support gen argument(s) {', '.join(missing)} yet", span
        )
    try:
        return SamplingParams(**kwargs)
    except ValueError as exc:
        raise NanoRuntimeError(str(exc), span) from None


def convert(dtype: str | None, text: str, span: Span) -> Any:
    """The value a ``dtype`` gen binds (the text itself goes to the context)."""
    try:
        if dtype == "int":
            return int(text.strip())
        if dtype == "float":
            return float(text.strip())
    except ValueError:
        raise NanoRuntimeError(
            f"gen with dtype {dtype!r} produced {text!r}, which is not a {dtype} "
            "(max_tokens too small?)",
            span,
        ) from None
    if dtype == "bool":
        return text.strip() == "True"
    return text


def meta_info(output: RequestOutput, options: GenOptions, tokenizer: Any) -> dict[str, Any]:
    """What ``meta(x)`` / ``get_meta_info("x")`` gives: ids, counts, finish reason, and (when
    asked) the logprob of each output token with its text, plus the top-k alternatives."""
    meta: dict[str, Any] = {
        "prompt_tokens": len(output.prompt_token_ids or ()),
        "completion_tokens": len(output.token_ids),
        "finish_reason": output.finish_reason,
        "output_token_ids": list(output.token_ids),
    }
    if options.return_logprob and output.logprobs is not None:
        meta["output_token_logprobs"] = [
            [lp, tid, tokenizer.decode([tid])]
            for lp, tid in zip(output.logprobs, output.token_ids, strict=False)
        ]
    top = getattr(output, "top_logprobs", None)
    if options.top_logprobs_num and top is not None:
        meta["output_top_logprobs"] = [
            [[lp, tid, tokenizer.decode([tid])] for tid, lp in position.items()] for position in top
        ]
    return meta


def prefill_meta(output: RequestOutput, options: GenOptions, tokenizer: Any) -> dict[str, Any]:
    """``meta(x)`` of a ``max_tokens = 0`` gen, from its one-token probe ``output``: no output
    tokens; with ``top_logprobs_num`` the probe's first position, i.e. the next token at the
    prompt's end, as SGLang's ``output_top_logprobs[0]``."""
    meta = meta_info(output, options, tokenizer)
    meta.update(completion_tokens=0, output_token_ids=[], finish_reason="length")
    if "output_token_logprobs" in meta:
        meta["output_token_logprobs"] = []
    if "output_top_logprobs" in meta:
        meta["output_top_logprobs"] = meta["output_top_logprobs"][:1]
    return meta


@functools.cache
def _fields(cls: type) -> frozenset[str]:
    """A dataclass's field names (looked up once: every ``gen`` asks)."""
    return frozenset(f.name for f in dataclasses.fields(cls))
