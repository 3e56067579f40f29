"""How decode attention runs where a backend has a choice (plain data; no torch, no triton).

The Triton backend has two decode kernels (the gather kernel and the TMA kernel) and, over a
float8 (e4m3) KV cache, two dtypes to widen K/V tiles to before the dots. Other backends ignore
the choice. The engine builds one from ``EngineConfig.decode_kernel`` / ``fp8_decode_dot``
(``DecodeChoice.of``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from decimal import Decimal
from fractions import Fraction

# the decode kernel on the whole GPU: "auto" (the measured choice per KV cache dtype, see
# kernels.triton.paged_attention); "gather" (per-element loads, one program per work item, the
# hardware balances mixed context lengths); "tma" (TMA page copies on a persistent grid of the
# device's SMs, items handed out statically); "tma-items" (TMA page copies, one program per item);
# "gather-64" (the gather kernel in its configuration before 2026-11-30's measurement: 64-token
# KV tiles, four stages; kept to compare against); "by-context" (the engine's default,
# EngineConfig.decode_kernel; per decode batch over a 16-bit cache: "tma-items" when the decode
# rows' contexts are near-uniform, see contexts_uniform,
# else the gather kernel; "auto" over float8 caches; under decode CUDA graphs each batch size is
# captured twice, uniform and ragged). "by-context@RATIO" names the uniform-context ratio
# (DecodeChoice.uniform_ratio; e.g. by-context@1.05), UNIFORM_CONTEXT_RATIO without one.
WHOLE_GPU_KERNELS = ("auto", "gather", "tma", "tma-items", "gather-64", "by-context")
# float8 caches: "fp16" (K/V widened to float16, q scaled per row into its range; the default),
# "q" (widened to the queries' dtype, bfloat16 on the engine: three conversions per two values)
FP8_DOTS = ("fp16", "q")
# "by-context": a decode batch is near-uniform when its longest context is at most this many
# times its mean. Measured (H200, 256 decodes over bf16, 8B's heads and a 70B TP=2 rank's, mean
# contexts 800 and 1,536; bench/decode_gqa.py, bench/results/2026-11-30-h200-decode-gqa.json):
# on equal contexts (ratio 1.0) TMA one program per item read the cache at 0.95-1.01 of a copy
# against the gather kernel's 0.84-0.96; on contexts uniformly random up to twice the mean
# (ratio about 2) at 0.73-0.81 against 0.78-0.93. In the engine (Llama-3-8B, H200, 256
# requests, one run each, 2026-11-30): 1.25 measured 1.032x "auto" on 512/1024 (every batch's
# contexts nearly equal) but 0.954x on ShareGPT-like, where 527 of 1,192 decode steps were classed
# uniform and TMA lost on those not-quite-equal contexts. 1.05 (an A-B-A run, seventh session:
# bench/results/2026-11-30-h200-llama-3-8b-by-context-ratio-aba-256.json) measured 1.031x on
# 512/1024, 1.019x on 1024/512 and 0.997x on ShareGPT-like (102 of 1,192 steps classed uniform,
# decode steps 6.79-6.81 ms against 6.79: inside the run-to-run spread), and 1.1 the same as 1.05
# to 0.2% on those and Splitwise-like (0.998x, 0.996x), so 1.05 is the default.
# A spec sets its own to sweep (by-context@1.02, ...).
UNIFORM_CONTEXT_RATIO = Fraction(21, 20)
# a ratio in a spec: a decimal (1.05) or a quotient of integers (21/20), read exactly
RATIO_SYNTAX = re.compile(r"\d+(\.\d+)?|\d+/0*[1-9]\d*")


def contexts_uniform(context_lens: Sequence[int], ratio: Fraction) -> bool:
    """Whether decode rows of these context lengths are near-uniform for "by-context": max <=
    ``ratio`` x mean, in exact integer arithmetic (every tensor-parallel rank, given the same
    lengths and the same choice, decides the same). An empty batch counts as uniform."""
    if not context_lens:
        return True
    return max(context_lens) * len(context_lens) * ratio.denominator <= (
        ratio.numerator * sum(context_lens)
    )


def parse_ratio(text: str) -> Fraction:
    """A uniform-context ratio as a spec writes it, exactly (ValueError: not a ratio)."""
    if not RATIO_SYNTAX.fullmatch(text):
        raise ValueError(f"{text!r} is not a ratio (a decimal such as 1.05, or 21/20)")
    return Fraction(text)


def ratio_text(ratio: Fraction) -> str:
    """``ratio`` as a spec writes it: a decimal where one is exact (1.25, 1.05, 1), else N/D."""
    decimal = Decimal(ratio.numerator) / Decimal(ratio.denominator)
    return format(decimal, "f") if Fraction(decimal) == ratio else str(ratio)


@dataclass(frozen=True)
class DecodeChoice:
    """The whole-GPU decode kernel, the dots over a float8 cache and, for "by-context", the
    uniform-context ratio (max over mean context; exact, so that every tensor-parallel rank
    classes a batch alike). An SM budget below the device's (a pipeline partition) keeps its
    measured kernel; the dots apply there too."""

    whole_gpu: str = "auto"
    fp8_dot: str = "fp16"
    uniform_ratio: Fraction = UNIFORM_CONTEXT_RATIO

    def __post_init__(self) -> None:
        if self.whole_gpu not in WHOLE_GPU_KERNELS:
            raise ValueError(f"decode kernel must be one of {', '.join(WHOLE_GPU_KERNELS)}, "
                             f"got {self.whole_gpu!r}")  # fmt: skip
        if self.fp8_dot not in FP8_DOTS:
            raise ValueError(f"fp8 decode dot must be one of {', '.join(FP8_DOTS)}, "
                             f"got {self.fp8_dot!r}")  # fmt: skip
        if not isinstance(self.uniform_ratio, Fraction):
            raise TypeError(f"the uniform-context ratio must be an exact Fraction, "
                            f"got {self.uniform_ratio!r}")  # fmt: skip
        if self.uniform_ratio < 1:
            raise ValueError(f"the uniform-context ratio (max / mean context) must be at least "
                             f"1, got {ratio_text(self.uniform_ratio)}")  # fmt: skip
        if self.whole_gpu != "by-context" and self.uniform_ratio != UNIFORM_CONTEXT_RATIO:
            raise ValueError(f"only by-context takes a uniform-context ratio, "
                             f"not {self.whole_gpu!r}")  # fmt: skip

    @staticmethod
    def of(kernel: str, dot: str = "fp16", spec: str | None = None) -> DecodeChoice:
        """``KERNEL`` or ``by-context@RATIO`` (``EngineConfig.decode_kernel``) and a dot; a
        ValueError names ``spec`` (the whole spec parsed), else ``kernel``."""
        name, at, ratio = kernel.strip().partition("@")
        try:
            if at and name != "by-context":
                raise ValueError("only by-context takes a uniform-context ratio (by-context@RATIO)")
            return DecodeChoice(name, dot, parse_ratio(ratio)) if at else DecodeChoice(name, dot)
        except ValueError as exc:
            named = f"decode choice {spec!r}" if spec is not None else f"decode kernel {kernel!r}"
            raise ValueError(f"{named}: {exc}") from None

    @staticmethod
    def parse(spec: str) -> DecodeChoice:
        """``KERNEL:DOT`` (e.g. ``gather:q``, ``by-context@1.05:fp16``) or ``KERNEL`` alone."""
        kernel, _, dot = spec.strip().partition(":")
        return DecodeChoice.of(kernel, dot or "fp16", spec)

    def kernel_spec(self) -> str:
        """The kernel part of ``spec()``: ``KERNEL``, ``by-context@RATIO`` with its ratio."""
        if self.whole_gpu != "by-context":
            return self.whole_gpu
        return f"{self.whole_gpu}@{ratio_text(self.uniform_ratio)}"

    def spec(self) -> str:
        return f"{self.kernel_spec()}:{self.fp8_dot}"
