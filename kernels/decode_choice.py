"""How decode attention runs where a backend has a choice (plain data; no torch, no triton).

The Triton backend has two decode kernels (the gather kernel and the TMA kernel) and, over a
float8 (e4m3) KV cache, two dtypes to widen K/V tiles to before the dots. Other backends ignore
the choice. The engine builds one from ``EngineConfig.decode_kernel`` / ``fp8_decode_dot``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from fractions import Fraction

# the decode kernel on the whole GPU: "auto" (the measured choice per KV cache dtype, see
# kernels.triton.paged_attention); "gather" (per-element loads, one program per work item, the
# hardware balances mixed context lengths); "tma" (TMA page copies on a persistent grid of the
# device's SMs, items handed out statically); "tma-items" (TMA page copies, one program per item);
# "gather-64" (the gather kernel in its configuration before 2026-11-30's measurement: 64-token
# KV tiles, four stages; kept to compare against); "by-context" (opt-in, per decode batch over a
# 16-bit cache: "tma-items" when the decode rows' contexts are near-uniform, see contexts_uniform,
# else the gather kernel; "auto" over float8 caches; under decode CUDA graphs each batch size is
# captured twice, uniform and ragged)
WHOLE_GPU_KERNELS = ("auto", "gather", "tma", "tma-items", "gather-64", "by-context")
# float8 caches: "fp16" (K/V widened to float16, q scaled per row into its range; the default),
# "q" (widened to the queries' dtype, bfloat16 on the engine: three conversions per two values)
FP8_DOTS = ("fp16", "q")
# "by-context": a decode batch is near-uniform when its longest context is at most this many
# times its mean. Measured (H200, 256 decodes over bf16, 8B's heads and a 70B TP=2 rank's, mean
# contexts 800 and 1,536; bench/decode_gqa.py, bench/results/2026-11-30-h200-decode-gqa.json):
# on equal contexts (ratio 1.0) TMA one program per item read the cache at 0.95-1.01 of a copy
# against the gather kernel's 0.84-0.96; on contexts uniformly random up to twice the mean
# (ratio about 2) at 0.73-0.81 against 0.78-0.93. No ratio in between was measured: 1.25 keeps
# batches close to the first shape on TMA and leaves everything more ragged to the gather kernel.
UNIFORM_CONTEXT_RATIO = 1.25


def contexts_uniform(context_lens: Sequence[int]) -> bool:
    """Whether decode rows of these context lengths are near-uniform for "by-context": max <=
    ``UNIFORM_CONTEXT_RATIO`` x mean, in exact integer arithmetic (every tensor-parallel rank,
    given the same lengths, decides the same). An empty batch counts as uniform."""
    if not context_lens:
        return True
    ratio = Fraction(UNIFORM_CONTEXT_RATIO)
    return max(context_lens) * len(context_lens) * ratio.denominator <= (
        ratio.numerator * sum(context_lens)
    )


@dataclass(frozen=True)
class DecodeChoice:
    """The whole-GPU decode kernel and the dots over a float8 cache. An SM budget below the
    device's (a pipeline partition) keeps its measured kernel; the dots apply there too."""

    whole_gpu: str = "auto"
    fp8_dot: str = "fp16"

    def __post_init__(self) -> None:
        if self.whole_gpu not in WHOLE_GPU_KERNELS:
            raise ValueError(f"decode kernel must be one of {', '.join(WHOLE_GPU_KERNELS)}, "
                             f"got {self.whole_gpu!r}")  # fmt: skip
        if self.fp8_dot not in FP8_DOTS:
            raise ValueError(f"fp8 decode dot must be one of {', '.join(FP8_DOTS)}, "
                             f"got {self.fp8_dot!r}")  # fmt: skip

    @staticmethod
    def parse(spec: str) -> DecodeChoice:
        """``KERNEL:DOT`` (e.g. ``gather:q``, ``tma-items:fp16``) or ``KERNEL`` alone."""
        kernel, _, dot = spec.strip().partition(":")
        return DecodeChoice(kernel, dot or "fp16")

    def spec(self) -> str:
        return f"{self.whole_gpu}:{self.fp8_dot}"
