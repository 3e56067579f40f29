"""Profiles as data: per-operation timings at nano-batch sizes and SM budgets, and pairwise
interference slowdowns, in a frozen, versioned JSON schema that the search reads.

A timing is one operation of one decoder layer over ``tokens`` rows on one placement:
``whole`` (all SMs, plain stream), ``green:N`` (a green-context partition of N SMs) or ``grid:N``
(a plain stream, the kernel's persistent grid capped at N SMs; only kernels that take a grid size).
Attention timings also carry the phase (``decode``: one query row per sequence; ``prefill``: a
chunk of ``tokens`` rows) and the context length. An interference entry is the factor by which
``op`` on ``placement`` slows down while ``beside`` runs at the same time on the rest of the device
(``placement`` whole: both on plain streams).
"""

from __future__ import annotations

import bisect
import json
import re
from collections import defaultdict
from dataclasses import asdict, dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

SCHEMA = "nanolang.tune.profile"
VERSION = 1
PHASES = ("", "decode", "prefill")
_PLACEMENT = re.compile(r"^(whole|(green|grid|confined|carve):[1-9][0-9]*)$")


class ProfileError(ValueError):
    """A malformed profile, or a question the profile cannot answer."""


def placement_sms(placement: str, device_sms: int) -> int:
    """SMs a placement may use."""
    return device_sms if placement == "whole" else int(placement.split(":")[1])


@dataclass(frozen=True)
class ModelShape:
    """What the cost model needs of the model: sizes of one decoder layer."""

    hidden_size: int
    q_size: int
    kv_size: int
    intermediate_size: int
    num_layers: int
    head_dim: int
    dtype_bytes: int

    def weight_bytes(self, op: str) -> int:
        h, q, kv, i = self.hidden_size, self.q_size, self.kv_size, self.intermediate_size
        elems = {"qkv_proj": (q + 2 * kv) * h, "o_proj": h * q,
                 "gate_up_proj": 2 * i * h, "down_proj": h * i}.get(op, 0)  # fmt: skip
        return elems * self.dtype_bytes


@dataclass(frozen=True)
class OpTiming:
    op: str
    placement: str
    tokens: int
    ms: float
    phase: str = ""  # attention only: decode / prefill
    context: int = 0  # attention only: tokens of context per sequence


@dataclass(frozen=True)
class Interference:
    op: str
    beside: str
    placement: str  # where ``op`` ran; ``beside`` had the rest of the device
    tokens: int
    slowdown: float  # time beside / time alone, >= about 1
    # where ``beside`` ran (e.g. attention capped at 64 SMs, or on a whole second stream): the
    # same operation slows down very differently beside each; "" in profiles that lack it
    partner: str = ""


@dataclass(frozen=True)
class Profile:
    model: str
    device: str
    device_sms: int
    concurrent: bool  # False: the device runs one stream at a time (the CPU): nothing overlaps
    hbm_gb_s: float  # measured streaming bandwidth, GB/s
    shape: ModelShape
    ops: tuple[tuple[str, str], ...]  # (name, kind) of one decoder layer, in order
    timings: tuple[OpTiming, ...]
    interference: tuple[Interference, ...] = ()
    created: str = ""
    command: str = ""
    notes: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)

    def __post_init__(self) -> None:
        names = [n for n, _ in self.ops]
        if not names or len(set(names)) != len(names):
            raise ProfileError(f"ops must name each operation once, got {names}")
        if [k for _, k in self.ops].count("attention") != 1:
            raise ProfileError("exactly one operation must be of kind 'attention'")
        for t in self.timings:
            self._check(t.op, t.placement)
            if t.tokens < 1 or not t.ms > 0 or t.phase not in PHASES or t.context < 0:
                raise ProfileError(f"bad timing {t}: tokens >= 1, ms > 0, phase in {PHASES}")
            if (t.op == self.attention) != bool(t.phase):
                raise ProfileError(f"{t}: attention timings need a phase, others none")
        for f in self.interference:
            self._check(f.op, f.placement)
            if f.beside not in names or not f.slowdown > 0:
                raise ProfileError(f"bad interference entry {f}")
            if f.partner:
                self._check(f.beside, f.partner)

    def _check(self, op: str, placement: str) -> None:
        if op not in {n for n, _ in self.ops}:
            raise ProfileError(f"unknown operation {op!r}; the profile's layer has {self.ops}")
        if not _PLACEMENT.match(placement):
            raise ProfileError(f"bad placement {placement!r}: whole, or green, grid, confined "
                               "or carve with :N")
        if placement_sms(placement, self.device_sms) > self.device_sms:
            raise ProfileError(f"placement {placement} exceeds the device's {self.device_sms} SMs")

    # ------------------------------------------------------------------ lookups
    @property
    def attention(self) -> str:
        return next(n for n, k in self.ops if k == "attention")

    @cached_property
    def _curves(self) -> dict[tuple[str, str, str, int], list[tuple[int, float]]]:
        out: dict[tuple[str, str, str, int], list[tuple[int, float]]] = defaultdict(list)
        for t in self.timings:
            out[(t.op, t.placement, t.phase, t.context)].append((t.tokens, t.ms))
        return {k: sorted(v) for k, v in out.items()}

    @property
    def max_tokens(self) -> int:
        """The largest nano-batch measured for every operation but attention."""
        return min(max(t.tokens for t in self.timings if t.op == n)
                   for n, _ in self.ops if n != self.attention)  # fmt: skip

    @property
    def max_context(self) -> int:
        return max(t.context for t in self.timings if t.op == self.attention)

    def placements(self, op: str) -> set[str]:
        return {t.placement for t in self.timings if t.op == op}

    def time_ms(
        self, op: str, placement: str, tokens: int, phase: str = "", context: int = 0
    ) -> float:
        """Interpolated time of ``op`` over ``tokens`` rows; attention also by context."""
        if tokens <= 0:
            return 0.0
        if op != self.attention:
            return _interp(self._curve(op, placement, "", 0), tokens)
        want = (op, placement, phase)
        contexts = sorted({c for (o, p, ph, c) in self._curves if (o, p, ph) == want})
        if not contexts:
            raise ProfileError(f"no {phase} timings of {op} on {placement}")
        at = [(c, _interp(self._curve(op, placement, phase, c), tokens)) for c in contexts]
        return _interp(at, max(context, 1))

    def _curve(self, op: str, placement: str, phase: str, context: int) -> list[tuple[int, float]]:
        try:
            return self._curves[(op, placement, phase, context)]
        except KeyError:
            raise ProfileError(f"no timings of {op} on {placement}") from None

    def slowdown(
        self, op: str, beside: str, placement: str, tokens: int, partner: str = ""
    ) -> float:
        """Measured slowdown of op beside another (on ``partner``'s placement when the profile
        records it); the nearest measured size, 1.0 if none."""
        rows = [f for f in self.interference
                if (f.op, f.beside, f.placement) == (op, beside, placement)]  # fmt: skip
        if partner:
            rows = [f for f in rows if f.partner == partner] or [f for f in rows if not f.partner]
        if not rows:
            return 1.0
        return min(rows, key=lambda f: (abs(f.tokens - tokens), f.tokens)).slowdown

    # ------------------------------------------------------------------ JSON
    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "version": VERSION,
            "model": self.model,
            "device": self.device,
            "device_sms": self.device_sms,
            "concurrent": self.concurrent,
            "hbm_gb_s": self.hbm_gb_s,
            "shape": asdict(self.shape),
            "ops": [list(o) for o in self.ops],
            "timings": [asdict(t) for t in self.timings],
            "interference": [asdict(f) for f in self.interference],
            "created": self.created,
            "command": self.command,
            "notes": self.notes,
        }

    def save(self, path: str | Path) -> None:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        Path(path).write_text(json.dumps(self.to_dict(), indent=1) + "\n")

    @staticmethod
    def from_dict(d: dict[str, Any]) -> Profile:
        if d.get("schema") != SCHEMA:
            raise ProfileError(f"not a profile: schema {d.get('schema')!r}, expected {SCHEMA!r}")
        if d.get("version") != VERSION:
            raise ProfileError(
                f"profile version {d.get('version')} is not {VERSION}: profile again "
                "(nanolang tune --model M)"
            )
        try:
            return Profile(
                model=str(d["model"]),
                device=str(d["device"]),
                device_sms=int(d["device_sms"]),
                concurrent=bool(d["concurrent"]),
                hbm_gb_s=float(d["hbm_gb_s"]),
                shape=ModelShape(**{k: int(v) for k, v in d["shape"].items()}),
                ops=tuple((str(n), str(k)) for n, k in d["ops"]),
                timings=tuple(OpTiming(**t) for t in d["timings"]),
                interference=tuple(Interference(**f) for f in d.get("interference", [])),
                created=str(d.get("created", "")),
                command=str(d.get("command", "")),
                notes=dict(d.get("notes", {})),
            )
        except (KeyError, TypeError, ValueError) as exc:
            if isinstance(exc, ProfileError):
                raise
            raise ProfileError(f"malformed profile: {exc!r}") from exc

    @staticmethod
    def load(path: str | Path) -> Profile:
        try:
            return Profile.from_dict(json.loads(Path(path).read_text()))
        except json.JSONDecodeError as exc:
            raise ProfileError(f"{path}: not JSON ({exc})") from exc


def _interp(points: list[tuple[int, float]], x: float) -> float:
    """Piecewise linear through sorted (x, y) points; below the first point its value (a small
    batch costs at least the smallest one measured), above the last the last slope (>= 0)."""
    xs = [p[0] for p in points]
    if x <= xs[0]:
        return points[0][1]
    i = bisect.bisect_left(xs, x)
    if i == len(xs):
        if len(points) == 1:
            return points[0][1] * x / xs[0]
        (x0, y0), (x1, y1) = points[-2], points[-1]
        return y1 + max(0.0, (y1 - y0) / (x1 - x0)) * (x - x1)
    (x0, y0), (x1, y1) = points[i - 1], points[i]
    return y0 + (y1 - y0) * (x - x0) / (x1 - x0)


def merge_profiles(stored: Profile, fresh: Profile) -> Profile:
    """The stored profile with what ``fresh`` re-measured (e.g. attention after its kernel
    changed, ``nanolang tune --profile P --reprofile attention``): each (operation, phase) that
    ``fresh`` timed replaces all of the stored one's timings of it, on every placement (a curve
    is never a mix of two builds); ``fresh``'s interference, when it has any, replaces the
    stored one's (every pair has attention on one side). The stored profile's calibration is
    dropped: it was measured against forwards with the old timings."""
    for what in ("device", "device_sms", "shape", "ops"):
        old, new = getattr(stored, what), getattr(fresh, what)
        if old != new:
            raise ProfileError(f"cannot merge profiles of different {what}: {old!r} and {new!r}")
    redone = {(t.op, t.phase) for t in fresh.timings}
    if not redone:
        raise ProfileError("the re-profile measured nothing: nothing to merge")
    kept = tuple(t for t in stored.timings if (t.op, t.phase) not in redone)
    # the calibration, and the note on how the stored interference's partners were recovered
    # when fresh interference replaces it, describe what is no longer in the profile
    stale = {"calibration"} | ({"partners"} if fresh.interference else set())
    notes = {k: v for k, v in stored.notes.items() if k not in stale}
    notes.update({k: v for k, v in fresh.notes.items() if k in ("kv_cache_dtype", "kernels")})
    notes["merged"] = {
        "stored": {"created": stored.created, "command": stored.command,
                   "timings_kept": len(kept), "interference_kept": not fresh.interference},
        "fresh": {"created": fresh.created, "command": fresh.command,
                  "timings": len(fresh.timings), "interference": len(fresh.interference),
                  "seconds": fresh.notes.get("seconds"), "failures": fresh.notes.get("failures"),
                  "config": fresh.notes.get("config")},
        "replaced": sorted(f"{op} {phase}".strip() for op, phase in redone),
        "calibration_dropped": "calibration" in stored.notes,
    }  # fmt: skip
    if "kv_cache_dtype" not in fresh.notes:
        notes.pop("kv_cache_dtype", None)
    return replace(
        stored,
        timings=kept + fresh.timings,
        interference=fresh.interference or stored.interference,
        hbm_gb_s=fresh.hbm_gb_s,
        created=fresh.created,
        command=f"{stored.command} | {fresh.command}".strip(" |"),
        notes=notes,
    )
