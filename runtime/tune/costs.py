"""The cost model the search optimises: durations and HBM bytes of a layer's segments over a
range of batch rows, on a layout, from a profile.

A layer is three segments per nano-batch (NanoFlow's fused chains): ``pre`` (the operations
before attention: norm, QKV, rope, KV store), ``att`` (attention) and ``post`` (the operations
after it: O projection, norm, gate/up, activation, down). A layout says where they run:
``dense`` (one stream, all SMs), ``streams`` (attention on a second stream of the whole device),
``green:N`` (attention on a green context of N SMs, the rest on the other SMs), ``grid:N``
(attention on a second stream with its grid sized to N SMs: several small programs per SM, so
it may spread over the whole device) or ``carve:N`` (the same attention beside GEMMs aimed at the
other SMs with cuBLASLt's SM count target, so that they leave N SMs to attention: a partition
without green contexts, kept by the GEMMs). In the concurrent layouts every step is charged its
measured slowdown beside the other side (attention beside the worst GEMM, each other operation
beside attention): the model assumes the two sides always overlap, which is pessimistic for the
steps that end up running alone.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

from runtime.tune.profiles import Profile, placement_sms

SEGMENTS = ("pre", "att", "post")
UNIT = {"pre": 0, "att": 1, "post": 0}  # unit 0: GEMMs and small ops; unit 1: attention


@dataclass(frozen=True)
class BatchShape:
    """An iteration's batch: decode sequences first, then prefill rows, one mean context."""

    decodes: int
    prefill_tokens: int
    context: int

    @property
    def tokens(self) -> int:
        return self.decodes + self.prefill_tokens

    def split_rows(self, a: int, b: int) -> tuple[int, int]:
        """(decode rows, prefill rows) among batch rows [a, b)."""
        dec = max(0, min(b, self.decodes) - min(a, self.decodes))
        return dec, (b - a) - dec


@dataclass(frozen=True)
class Layout:
    name: str  # dense | streams | green:N | grid:N | carve:N
    attention: str  # placement of attention
    other: str  # placement of every other operation
    concurrent: bool

    @property
    def attention_sms(self) -> int | None:
        """Attention's green-context SMs (None: it shares the whole device's partition)."""
        return int(self.name.split(":")[1]) if self.name.startswith("green:") else None

    @property
    def attention_cap(self) -> int | None:
        """Attention's grid cap on a plain stream (grid:N, carve:N)."""
        capped = self.name.startswith(("grid:", "carve:"))
        return int(self.name.split(":")[1]) if capped else None

    @property
    def other_cap(self) -> int | None:
        """The SMs the other operations' GEMMs aim at on a plain stream (carve:N's rest)."""
        return int(self.other.split(":")[1]) if self.other.startswith("carve:") else None


DENSE = Layout("dense", "whole", "whole", False)


def layouts(profile: Profile) -> list[Layout]:
    """The concurrent layouts the profile has timings for (none on a device without overlap)."""
    if not profile.concurrent:
        return []
    att, others = profile.attention, [n for n, _ in profile.ops if n != profile.attention]
    have = set.intersection(*(profile.placements(o) for o in others))
    out = [Layout("streams", "whole", "whole", True)] if "whole" in have else []
    for p in sorted(profile.placements(att), key=lambda p: placement_sms(p, profile.device_sms)):
        n = placement_sms(p, profile.device_sms)
        rest = f"green:{profile.device_sms - n}"
        if p.startswith("green:") and rest in have:
            out.append(Layout(p, p, rest, True))
        if not p.startswith("grid:"):
            continue
        partners = _partners(profile, p)
        carve = f"carve:{profile.device_sms - n}"
        # grid:N beside the whole device unless attention there was timed only beside a carve
        if "whole" in have and ("whole" in partners or not partners - {""}):
            out.append(Layout(p, p, "whole", True))
        if carve in have and carve in partners:
            out.append(Layout(f"carve:{n}", p, carve, True))
    return out


def _partners(profile: Profile, placement: str) -> set[str]:
    """The placements of the other operations beside which attention on ``placement`` was
    timed (a grid:N attention is paired with the whole device, the carve's rest, or both)."""
    return {f.partner for f in profile.interference
            if f.op == profile.attention and f.placement == placement}  # fmt: skip


class Costs:
    """Segment durations (µs) and HBM bytes of a profile for one batch shape."""

    def __init__(self, profile: Profile, shape: BatchShape) -> None:
        self.profile, self.shape = profile, shape
        names = [n for n, _ in profile.ops]
        i = names.index(profile.attention)
        self.ops = {"pre": tuple(names[:i]), "att": (names[i],), "post": tuple(names[i + 1 :])}
        if not self.ops["pre"] or not self.ops["post"]:
            raise ValueError("the layer needs operations before and after attention")
        gemms = [n for n, _ in profile.ops if profile.shape.weight_bytes(n)]
        self.gemms = gemms or names
        # measured / predicted forward time per layout (runtime.tune.calibrate); a layout never
        # measured is priced as the worst measured one, so the search does not favour it for
        # being uncalibrated (no calibration at all: 1)
        self.calibration: dict[str, float] = dict(profile.notes.get("calibration", {}))
        self.uncalibrated = max(self.calibration.values(), default=1.0)
        self.us = cache(self._calibrated_us)
        # bytes per KV element: the profile's attention read an fp8 cache, or the model's dtype
        kv_dtype = str(profile.notes.get("kv_cache_dtype", ""))
        self.kv_bytes = 1 if kv_dtype.startswith("float8") else profile.shape.dtype_bytes

    def _calibrated_us(self, layout: Layout, seg: str, a: int, b: int) -> float:
        factor = self.calibration.get(layout.name, self.uncalibrated)
        return self._us(layout, seg, a, b) * factor

    def _us(self, layout: Layout, seg: str, a: int, b: int) -> float:
        """Duration in µs of segment ``seg`` over rows [a, b) on ``layout``, uncalibrated."""
        p, rows = self.profile, b - a
        if rows <= 0:
            return 0.0
        if seg == "att":
            dec, pre = self.shape.split_rows(a, b)
            t = p.time_ms(p.attention, layout.attention, dec, "decode", self.shape.context)
            # a chunk longer than the mean context attends over at least itself
            t += p.time_ms(p.attention, layout.attention, pre, "prefill",
                           max(self.shape.context, pre))  # fmt: skip
            if layout.concurrent:
                t *= max(p.slowdown(p.attention, g, layout.attention, rows, layout.other)
                         for g in self.gemms)  # fmt: skip
            return 1e3 * t
        total = 0.0
        for op in self.ops[seg]:
            t = p.time_ms(op, layout.other, rows)
            if layout.concurrent:
                t *= p.slowdown(op, p.attention, layout.other, rows, layout.attention)
            total += t
        return 1e3 * total

    def bytes(self, seg: str, a: int, b: int) -> float:
        """HBM bytes segment ``seg`` moves over rows [a, b): weights once per nano-batch,
        activations in and out, and the KV cache attention reads."""
        shape, rows = self.profile.shape, b - a
        if rows <= 0:
            return 0.0
        if seg == "att":
            dec, pre = self.shape.split_rows(a, b)
            seqs_read = dec + (1 if pre else 0)  # a prefill chunk reads its context about once
            kv_token = 2 * shape.kv_size * self.kv_bytes
            return float(seqs_read * self.shape.context * kv_token)
        act = 2 * rows * shape.hidden_size * shape.dtype_bytes
        return float(sum(shape.weight_bytes(op) + act for op in self.ops[seg]))

    def hbm_us(self, nbytes: float) -> float:
        return nbytes / (self.profile.hbm_gb_s * 1e3)  # GB/s = 1e3 bytes per µs

    def dense_layer_us(self) -> float:
        """One layer of the whole batch on one stream, all SMs."""
        rows = self.shape.tokens
        return sum(self.us(DENSE, s, 0, rows) for s in SEGMENTS)
