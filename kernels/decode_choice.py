"""How decode attention runs where a backend has a choice (plain data; no torch, no triton).

The Triton backend has two decode kernels (the gather kernel and the TMA kernel) and, over a
float8 (e4m3) KV cache, two dtypes to widen K/V tiles to before the dots. Other backends ignore
the choice. The engine builds one from ``EngineConfig.decode_kernel`` / ``fp8_decode_dot``.
"""

from __future__ import annotations

from dataclasses import dataclass

# the decode kernel on the whole GPU: "auto" (the measured choice per KV cache dtype, see
# kernels.triton.paged_attention); "gather" (per-element loads, one program per work item, the
# hardware balances mixed context lengths); "tma" (TMA page copies on a persistent grid of the
# device's SMs, items handed out statically); "tma-items" (TMA page copies, one program per item);
# "gather-64" (the gather kernel in its configuration before 2026-11-30's measurement: 64-token
# KV tiles, four stages; kept to compare against)
WHOLE_GPU_KERNELS = ("auto", "gather", "tma", "tma-items", "gather-64")
# float8 caches: "fp16" (K/V widened to float16, q scaled per row into its range; the default),
# "q" (widened to the queries' dtype, bfloat16 on the engine: three conversions per two values)
FP8_DOTS = ("fp16", "q")


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
